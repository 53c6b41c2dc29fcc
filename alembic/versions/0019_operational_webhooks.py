"""operational webhooks: Jenga tells the sender about its endpoints (issue 16)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 20:00:00

* ``webhook_endpoints.operational``: an endpoint that receives Jenga's own events
  about the application's other endpoints (``endpoint.disabled``, ``.failing``,
  ``.recovered``, ``message.attempt.exhausted``) instead of the sender's messages.
* ``webhook_endpoints.failing_notified_at``: when ``endpoint.failing`` was sent for
  the current run of failures (NULL: not sent); a success clears it with
  ``failing_since`` and sends ``endpoint.recovered``.
* ``webhook_operational_events``: the outbox of those events, written in the
  statement that decides them (the attempt's record, the API's disable); the
  worker turns each into messages and deliveries and deletes it.
* The application ``app_operations``: its endpoints (all operational) get the
  events about every application, for the operators of the fleet.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

OPERATIONS_APP_ID = "app_operations"


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints",
        sa.Column("operational", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("failing_notified_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "webhook_operational_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "app_id",
            sa.String(40),
            sa.ForeignKey("webhook_apps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("data", JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.execute(
        "INSERT INTO webhook_apps (id, uid, name) VALUES"
        f" ('{OPERATIONS_APP_ID}', NULL, 'Operations (every application''s operational events)')"
        " ON CONFLICT (id) DO NOTHING"
    )


def downgrade() -> None:
    op.execute(f"DELETE FROM webhook_apps WHERE id = '{OPERATIONS_APP_ID}'")
    op.drop_table("webhook_operational_events")
    op.drop_column("webhook_endpoints", "failing_notified_at")
    op.drop_column("webhook_endpoints", "operational")
