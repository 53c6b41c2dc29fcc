"""a job may be cancelled (issue 16): ``webhook_jobs.status`` may be ``cancelled``

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 12:00:00

``POST …/jobs/{id}/cancel`` ends a queued or running job as ``cancelled``. Only the
check constraint changes: the partial indexes (``uq_webhook_jobs_app_unfinished_request``,
``ix_webhook_jobs_unfinished``) name the unfinished statuses, so a cancelled job is
finished for them as a done one is. ``webhook_jobs`` holds a row per job, so checking
the new constraint is a short scan under the table's lock.

Downgrade: cancelled jobs become ``failed`` with ``error`` saying they were cancelled.
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

OLD = "status IN ('queued', 'running', 'done', 'failed')"
NEW = "status IN ('queued', 'running', 'done', 'failed', 'cancelled')"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE webhook_jobs DROP CONSTRAINT ck_webhook_jobs_status,"
        f" ADD CONSTRAINT ck_webhook_jobs_status CHECK ({NEW})"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE webhook_jobs SET status = 'failed', error = 'cancelled'"
        " WHERE status = 'cancelled'"
    )
    op.execute(
        "ALTER TABLE webhook_jobs DROP CONSTRAINT ck_webhook_jobs_status,"
        f" ADD CONSTRAINT ck_webhook_jobs_status CHECK ({OLD})"
    )
