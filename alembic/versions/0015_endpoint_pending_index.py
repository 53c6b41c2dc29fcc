"""an index of each endpoint's pending deliveries, in due order

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:30:00

Parking an endpoint (open breaker), holding its backlog past a rate's horizon,
unparking, pausing and resuming all touch one endpoint's pending deliveries. Without
this index PostgreSQL finds them through the dispatcher's index of every pending
delivery (``ix_webhook_deliveries_due``), so each of those statements read the whole
fleet's due backlog: fine on a quiet day, slow in an outage of many receivers, when
it matters. Partial (pending rows only), so it stays small however many deliveries
are kept. Built ``CONCURRENTLY``: writes go on while it is built.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_deliveries_endpoint_pending",
            "webhook_deliveries",
            ["endpoint_id", "next_attempt_at"],
            postgresql_where="status = 'pending'",
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_webhook_deliveries_endpoint_pending",
            table_name="webhook_deliveries",
            postgresql_concurrently=True,
            if_exists=True,
        )
