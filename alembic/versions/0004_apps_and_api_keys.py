"""applications (tenants) and API keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:20:00

Every endpoint and message written before belongs to the default application
``app_default`` (uid ``default``), which the routes without an application
(``/v1/endpoints``, ``/v1/messages``) keep serving for one release. An
Idempotency-Key becomes unique per application. API keys are stored as their
SHA-256 only.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT_APP_ID = "app_default"


def upgrade() -> None:
    op.create_table(
        "webhook_apps",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("uid", sa.String(length=255), nullable=True, unique=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    op.execute(
        f"INSERT INTO webhook_apps (id, uid, name) VALUES ('{DEFAULT_APP_ID}', 'default', 'Default')"
    )
    for table in ("webhook_endpoints", "webhook_messages"):
        op.add_column(
            table,
            sa.Column(
                "app_id",
                sa.String(length=40),
                sa.ForeignKey("webhook_apps.id", ondelete="CASCADE"),
                server_default=DEFAULT_APP_ID,
                nullable=False,
            ),
        )
    op.create_index("ix_webhook_endpoints_app", "webhook_endpoints", ["app_id", "created_at", "id"])
    op.create_index("ix_webhook_messages_app", "webhook_messages", ["app_id", "created_at", "id"])
    op.drop_constraint("webhook_messages_idempotency_key_key", "webhook_messages", type_="unique")
    op.create_index(
        "uq_webhook_messages_app_idempotency",
        "webhook_messages",
        ["app_id", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("scopes", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("uq_webhook_messages_app_idempotency", table_name="webhook_messages")
    op.create_unique_constraint(
        "webhook_messages_idempotency_key_key", "webhook_messages", ["idempotency_key"]
    )
    op.drop_index("ix_webhook_messages_app", table_name="webhook_messages")
    op.drop_index("ix_webhook_endpoints_app", table_name="webhook_endpoints")
    op.drop_column("webhook_messages", "app_id")
    op.drop_column("webhook_endpoints", "app_id")
    op.drop_table("webhook_apps")
