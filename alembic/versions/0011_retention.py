"""retention: expunged message content, and the indexes the purge reads

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 17:40:00

* ``expunged_at`` / ``expunge_reason`` (``retention`` or ``request``): when a
  message's content (payload, body, the receivers' response excerpts) was removed;
  the row stays, saying so, until its record expires too;
* ``payload`` may be NULL (expunged);
* ``ix_webhook_messages_unexpunged`` (finished messages whose content is still
  there, by age) and ``ix_webhook_messages_created`` (every message by age): the
  purge's two scans start from the oldest row instead of reading the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_messages", sa.Column("expunged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "webhook_messages", sa.Column("expunge_reason", sa.String(length=20), nullable=True)
    )
    op.alter_column("webhook_messages", "payload", nullable=True)
    op.create_index(
        "ix_webhook_messages_unexpunged",
        "webhook_messages",
        ["created_at"],
        postgresql_where=sa.text("expunged_at IS NULL AND status <> 'pending'"),
    )
    op.create_index("ix_webhook_messages_created", "webhook_messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_created", table_name="webhook_messages")
    op.drop_index("ix_webhook_messages_unexpunged", table_name="webhook_messages")
    op.execute("UPDATE webhook_messages SET payload = 'null'::jsonb WHERE payload IS NULL")
    op.alter_column("webhook_messages", "payload", nullable=False)
    op.drop_column("webhook_messages", "expunge_reason")
    op.drop_column("webhook_messages", "expunged_at")
