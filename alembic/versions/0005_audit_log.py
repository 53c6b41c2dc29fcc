"""audit log of admin actions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10 10:00:00

One row per admin action (a key made or revoked, an application made or
deleted, an endpoint deleted, a breaker forced): who (a key's prefix, "admin
token" or "cli"), what (action and target id), when (PostgreSQL's clock). No
foreign keys: the entry outlives what it names. ``id`` orders the entries and
is the ``?before=`` cursor of ``GET /v1/audit``.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
