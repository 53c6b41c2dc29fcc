"""endpoints remember since when every attempt has failed, to disable the dead ones

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 19:00:00

``webhook_endpoints.failing_since``: the first failed attempt after the last success
(NULL: the last attempt succeeded, or none was made). An endpoint whose attempts have
all failed for ``ENDPOINT_DISABLE_AFTER_DAYS`` is disabled at its next failure.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "failing_since")
