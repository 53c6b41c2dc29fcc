"""an endpoint parked behind its receiver's open breaker

Revision ID: 0006
Revises: 0009
Create Date: 2026-12-03 17:00:00

``webhook_endpoints.parked_until``: set by the first delivery an open breaker
refuses, before its messages are moved; until then the dispatcher skips the
endpoint's messages and a task that finds one does not claim it, so a dead host's
due backlog is not enqueued while it is being parked. NULL: not parked.

After 0009 (event types), which landed first from the same 0005.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("parked_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "parked_until")
