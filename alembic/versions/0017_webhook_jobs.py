"""background jobs (recover, bulk retry), and an index of each endpoint's failed deliveries

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 10:00:00

``webhook_jobs``: one row per job that re-queues failed deliveries (``recover`` of
an endpoint, ``retry`` by filter), with its filter, its progress (``total``,
``done_count``), the worker's lease on it (``lease_token``, ``leased_until``) and
where it has got to (the ``cursor_*`` columns, and ``due_frontier``: when the next
delivery it re-queues becomes due). Its indexes: the application's jobs newest
first, the sender's ``Idempotency-Key``, at most one unfinished job per identical
request, and the unfinished jobs the beat tick scans.

``ix_webhook_deliveries_endpoint_failed``: a job reads one endpoint's failed
deliveries in a window, in order of creation. Partial (failed rows only), so it
stays small however many deliveries are kept; built ``CONCURRENTLY``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "webhook_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "app_id",
            sa.String(40),
            sa.ForeignKey("webhook_apps.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("endpoint_id", sa.String(40), nullable=True),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("done_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cursor_endpoint_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("cursor_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cursor_delivery_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("due_frontier", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name="ck_webhook_jobs_status"
        ),
    )
    op.create_index("ix_webhook_jobs_app", "webhook_jobs", ["app_id", "created_at", "id"])
    op.create_index(
        "uq_webhook_jobs_app_idempotency",
        "webhook_jobs",
        ["app_id", "idempotency_key"],
        unique=True,
    )
    op.create_index(
        "uq_webhook_jobs_app_unfinished_request",
        "webhook_jobs",
        ["app_id", "request_hash"],
        unique=True,
        postgresql_where=sa.text(UNFINISHED),
    )
    op.create_index(
        "ix_webhook_jobs_unfinished",
        "webhook_jobs",
        ["created_at", "id"],
        postgresql_where=sa.text(UNFINISHED),
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_deliveries_endpoint_failed",
            "webhook_deliveries",
            ["endpoint_id", "created_at", "id"],
            postgresql_where="status = 'failed'",
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_webhook_deliveries_endpoint_failed",
            table_name="webhook_deliveries",
            postgresql_concurrently=True,
            if_exists=True,
        )
    op.drop_table("webhook_jobs")
