"""endpoints may be promised a rate; a delivery may hold a reserved send slot

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:00:00

``webhook_endpoints.rate_limit``: deliveries a second the endpoint's receiver is
promised at most (NULL: no limit; 1 to 10,000).
``webhook_deliveries.rate_slot_at``: the send slot the delivery reserved (see
``common/delivery/rate_slots.py``); it comes back then and is sent without taking
another. NULL: none held. Cleared by every other change of the delivery's state.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("rate_limit", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "ck_webhook_endpoints_rate_limit",
        "webhook_endpoints",
        "rate_limit BETWEEN 1 AND 10000",
    )
    op.add_column(
        "webhook_deliveries",
        sa.Column("rate_slot_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "rate_slot_at")
    op.drop_constraint("ck_webhook_endpoints_rate_limit", "webhook_endpoints", type_="check")
    op.drop_column("webhook_endpoints", "rate_limit")
