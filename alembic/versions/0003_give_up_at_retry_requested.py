"""when a message's retry schedule runs out, deferrals included; a retry asked
for during an attempt

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 14:00:00

``webhook_messages.give_up_at`` is set when a worker first claims the message
(now + the whole retry schedule) and cleared by a manual retry (a new round).
A message whose receiver's breaker stays open past it ends ``failed``: time
spent parked behind an open breaker counts toward the schedule. Existing rows
get theirs at their next claim.

``webhook_messages.retry_requested``: an operator asked for a retry while a
worker was attempting the message. The attempt is recorded as it ended, then
the message starts a new round at once, instead of the attempt's record
silently undoing the retry.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_messages", sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "webhook_messages",
        sa.Column("retry_requested", sa.Boolean(), server_default="false", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("webhook_messages", "retry_requested")
    op.drop_column("webhook_messages", "give_up_at")
