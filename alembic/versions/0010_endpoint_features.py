"""endpoints: uid and metadata, custom headers, secret rotation with a grace

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-03 17:30:00

* ``uid``: the sender's own id for the endpoint, unique per application;
* ``metadata``: a string map for the sender's own use;
* ``headers``: custom request headers sent with every delivery (an
  ``Authorization`` for a receiver behind a gateway);
* ``previous_secret`` / ``previous_secret_expires_at``: the secret replaced by the
  last rotation, still signing every delivery until then.

Existing endpoints get no uid, empty maps and no previous secret.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

EMPTY_MAP = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("uid", sa.String(length=255), nullable=True))
    op.add_column(
        "webhook_endpoints",
        sa.Column("metadata", postgresql.JSONB(), server_default=EMPTY_MAP, nullable=False),
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("headers", postgresql.JSONB(), server_default=EMPTY_MAP, nullable=False),
    )
    op.add_column("webhook_endpoints", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column(
        "webhook_endpoints",
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "uq_webhook_endpoints_app_uid", "webhook_endpoints", ["app_id", "uid"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_webhook_endpoints_app_uid", table_name="webhook_endpoints")
    for column in ("previous_secret_expires_at", "previous_secret", "headers", "metadata", "uid"):
        op.drop_column("webhook_endpoints", column)
