"""indexes for the lists' filters, attempts and stats (issue 16: search)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 20:00:00

* ``ix_webhook_messages_app_event_type`` ``(app_id, event_type, created_at, id)``: a
  list of one event type walks it newest first, as the plain list walks
  ``(app_id, created_at, id)``; with ``since``/``until``, from a bound of it.
* ``ix_webhook_messages_channels``: GIN over ``channels`` (``jsonb_path_ops``: ``@>``
  only, smaller than the default operator class), of messages with channels only.
  GIN has no order: PostgreSQL reads it for a rare channel and walks the
  application's messages for a common one (see ``api/search.py``). ``fastupdate``
  off: with a pending list, one message POST in a few thousand would pay for merging
  it into the index; a message has at most 10 channels to add.
* ``ix_webhook_deliveries_endpoint_created`` ``(endpoint_id, created_at, id)
  INCLUDE (status)`` replaces ``ix_webhook_deliveries_endpoint`` ``(endpoint_id,
  created_at)``: an endpoint's lists page on ``(created_at, id)``, now a bound of the
  index (the old one left the id to a sort of each tie), the per-endpoint attempts
  walk it into ``ix_webhook_attempts_delivery``, and the endpoint's stats count its
  rows by ``status`` from the index alone.

Built ``CONCURRENTLY``: writes go on meanwhile (each build waits for the
transactions open when it starts). The old index is dropped only once the new one
serves.
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_messages_app_event_type",
            "webhook_messages",
            ["app_id", "event_type", "created_at", "id"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_webhook_messages_channels",
            "webhook_messages",
            ["channels"],
            postgresql_using="gin",
            postgresql_ops={"channels": "jsonb_path_ops"},
            postgresql_where="channels IS NOT NULL",
            postgresql_with={"fastupdate": "off"},
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.create_index(
            "ix_webhook_deliveries_endpoint_created",
            "webhook_deliveries",
            ["endpoint_id", "created_at", "id"],
            postgresql_include=["status"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        op.drop_index(
            "ix_webhook_deliveries_endpoint",
            table_name="webhook_deliveries",
            postgresql_concurrently=True,
            if_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_webhook_deliveries_endpoint",
            "webhook_deliveries",
            ["endpoint_id", "created_at"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )
        for name, table in (
            ("ix_webhook_deliveries_endpoint_created", "webhook_deliveries"),
            ("ix_webhook_messages_channels", "webhook_messages"),
            ("ix_webhook_messages_app_event_type", "webhook_messages"),
        ):
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
