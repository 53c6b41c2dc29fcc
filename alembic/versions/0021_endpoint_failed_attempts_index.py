"""an index of each endpoint's deliveries with a failed attempt (issue 16: the
attempts list's ``status_code`` filter)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 14:00:00

``ix_webhook_deliveries_endpoint_failed_attempts`` ``(endpoint_id, created_at, id)``,
partial: deliveries with more than one attempt, or one or more and not delivered. The
others were delivered at their only attempt, a 2xx, so ``…/endpoints/{ep}/attempts?
status_code=5xx`` (or ``none``, ``404``: any filter a 2xx cannot match) walks this one
newest first instead of the endpoint's every delivery, and a rare answer is no longer
found by reading the whole attempts table. A delivery delivered at its first attempt
(nearly all of them) never enters it: ``RECORD`` adds no entry on the usual path.

Built ``CONCURRENTLY``: writes go on meanwhile.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

# As common.delivery.models.HAD_A_FAILED_ATTEMPT when this was written.
HAD_A_FAILED_ATTEMPT = (
    "(webhook_deliveries.attempt_count > 1"
    " OR (webhook_deliveries.status <> 'delivered' AND webhook_deliveries.attempt_count > 0))"
)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_deliveries_endpoint_failed_attempts",
            "webhook_deliveries",
            ["endpoint_id", "created_at", "id"],
            postgresql_where=sa.text(HAD_A_FAILED_ATTEMPT),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_webhook_deliveries_endpoint_failed_attempts",
            table_name="webhook_deliveries",
            postgresql_concurrently=True,
            if_exists=True,
        )
