"""endpoints can be paused: their deliveries are kept, nothing is attempted or failed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:50:00

``paused_at``: when the endpoint was paused (NULL: not paused). While it is set,
the endpoint's pending messages wait with ``next_attempt_at`` NULL; resuming
makes them due again in order of creation.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "paused_at")
