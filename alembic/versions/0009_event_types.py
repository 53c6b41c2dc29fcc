"""event types: the sender's catalog of the kinds of events it sends

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-03 17:10:00

``webhook_event_types``: one row per type name (``order.paid``), fleet-wide, with
an optional JSON Schema every message of the type must satisfy, and the
``archived`` / ``deprecated`` flags. Messages keep naming their type by text (no
foreign key): a type that is not in the catalog is accepted unless
``EVENT_TYPES_STRICT`` is set.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_event_types",
        sa.Column("name", sa.String(length=200), primary_key=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("schema", postgresql.JSONB(), nullable=True),
        sa.Column("archived", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("deprecated", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("webhook_event_types")
