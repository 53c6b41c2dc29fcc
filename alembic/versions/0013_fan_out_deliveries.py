"""fan-out: a message is sent to every subscribed endpoint, one delivery each

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 05:30:00

Until now a message was also its one delivery. From here:

* ``webhook_messages`` holds what was sent (application, event type, channels,
  payload, the signed body, Idempotency-Key, expunging); ``endpoint_id`` is the one
  endpoint the sender named, NULL when it went to every subscribed endpoint.
* ``webhook_deliveries`` holds the state of sending one message to one endpoint
  (status, schedule, lease, last error): the unit of dispatch, retry and attempt log.
  It is the old table renamed, so its rows, indexes and leases stay as they were; a
  delivery's id is its message's with ``dlv_`` for ``msg_``.
* ``webhook_attempts.message_id`` becomes ``delivery_id``.
* ``webhook_endpoints`` gains ``filter_types`` and ``channels`` (JSON arrays, NULL:
  every type / no channel filter).

Every existing message keeps its id, content and state (as its single delivery).
Tasks enqueued before the upgrade name message ids; they find no delivery and end,
and the dispatcher sends those deliveries again (``DELIVERY_REDISPATCH_SECONDS``).
Not reversible: downgrading would have to merge deliveries back into messages.
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

CONTENT = (
    "id, app_id, endpoint_id, event_type, payload, body, idempotency_key, request_hash,"
    " created_at, expunged_at, expunge_reason"
)


def upgrade() -> None:
    for statement in (
        # The old table becomes the deliveries, constraints and indexes renamed with it.
        "ALTER TABLE webhook_messages RENAME TO webhook_deliveries",
        "ALTER TABLE webhook_deliveries RENAME CONSTRAINT webhook_messages_pkey"
        " TO webhook_deliveries_pkey",
        "ALTER TABLE webhook_deliveries RENAME CONSTRAINT webhook_messages_endpoint_id_fkey"
        " TO webhook_deliveries_endpoint_id_fkey",
        "ALTER INDEX ix_webhook_messages_due RENAME TO ix_webhook_deliveries_due",
        "ALTER INDEX ix_webhook_messages_endpoint RENAME TO ix_webhook_deliveries_endpoint",
        "DROP INDEX ix_webhook_messages_app",
        "DROP INDEX ix_webhook_messages_created",
        "DROP INDEX ix_webhook_messages_unexpunged",
        "DROP INDEX uq_webhook_messages_app_idempotency",
        # The content, under the same ids.
        """CREATE TABLE webhook_messages (
            id varchar(40) PRIMARY KEY,
            app_id varchar(40) NOT NULL DEFAULT 'app_default'
                REFERENCES webhook_apps(id) ON DELETE CASCADE,
            endpoint_id varchar(40),
            event_type varchar(200) NOT NULL,
            channels jsonb,
            payload jsonb,
            body text NOT NULL,
            idempotency_key varchar(255),
            request_hash varchar(64) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            expunged_at timestamptz,
            expunge_reason varchar(20))""",
        f"INSERT INTO webhook_messages ({CONTENT}) SELECT {CONTENT} FROM webhook_deliveries",
        # Deliveries point at their message; attempts at their delivery.
        "ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_message_id_fkey",
        "ALTER TABLE webhook_deliveries ADD COLUMN message_id varchar(40)",
        "UPDATE webhook_deliveries SET message_id = id, id = 'dlv_' || substr(id, 5)",
        "ALTER TABLE webhook_deliveries ALTER COLUMN message_id SET NOT NULL",
        "ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_message_id_fkey"
        " FOREIGN KEY (message_id) REFERENCES webhook_messages(id) ON DELETE CASCADE",
        "ALTER TABLE webhook_attempts RENAME COLUMN message_id TO delivery_id",
        "UPDATE webhook_attempts SET delivery_id = 'dlv_' || substr(delivery_id, 5)",
        "ALTER TABLE webhook_attempts ADD CONSTRAINT webhook_attempts_delivery_id_fkey"
        " FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries(id) ON DELETE CASCADE",
        "ALTER INDEX ix_webhook_attempts_message RENAME TO ix_webhook_attempts_delivery",
        "ALTER TABLE webhook_deliveries DROP COLUMN app_id, DROP COLUMN event_type,"
        " DROP COLUMN payload, DROP COLUMN body, DROP COLUMN idempotency_key,"
        " DROP COLUMN request_hash, DROP COLUMN expunged_at, DROP COLUMN expunge_reason",
        # One delivery per (message, endpoint); the retention purge's "is any delivery of
        # this message still pending" probe.
        "CREATE UNIQUE INDEX uq_webhook_deliveries_message_endpoint"
        " ON webhook_deliveries (message_id, endpoint_id)",
        "CREATE INDEX ix_webhook_deliveries_pending_message ON webhook_deliveries (message_id)"
        " WHERE status = 'pending'",
        "CREATE INDEX ix_webhook_messages_app ON webhook_messages (app_id, created_at, id)",
        "CREATE UNIQUE INDEX uq_webhook_messages_app_idempotency"
        " ON webhook_messages (app_id, idempotency_key)",
        "CREATE INDEX ix_webhook_messages_unexpunged ON webhook_messages (created_at)"
        " WHERE expunged_at IS NULL",
        "CREATE INDEX ix_webhook_messages_created ON webhook_messages (created_at)",
        # Subscriptions.
        "ALTER TABLE webhook_endpoints ADD COLUMN filter_types jsonb, ADD COLUMN channels jsonb",
    ):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError(
        "0013 (fan-out) is not reversible: restore the backup taken before the upgrade"
    )
