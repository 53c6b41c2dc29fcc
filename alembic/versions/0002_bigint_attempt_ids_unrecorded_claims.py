"""64-bit attempt ids; count of claims that ended without a recorded attempt

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 13:50:00

``webhook_attempts.id`` was a 32-bit serial: about 62 days at the benchmarked
delivery rate, then every record fails fleet-wide. The type change rewrites
the attempts table under an exclusive lock (deliveries wait for it and are
recorded after): run it in a quiet hour on a large table.

``webhook_messages.unrecorded_claims`` counts the workers that claimed a
message and never recorded an attempt (the worker died, or PostgreSQL refused
the record): past ``DELIVERY_MAX_UNRECORDED_ATTEMPTS`` the message is failed
with the reason, instead of being re-sent for ever.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("webhook_attempts", "id", type_=sa.BigInteger(), existing_nullable=False)
    op.execute("ALTER SEQUENCE webhook_attempts_id_seq AS bigint")
    op.add_column(
        "webhook_messages",
        sa.Column("unrecorded_claims", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("webhook_messages", "unrecorded_claims")
    op.execute("ALTER SEQUENCE webhook_attempts_id_seq AS integer")
    op.alter_column("webhook_attempts", "id", type_=sa.Integer(), existing_nullable=False)
