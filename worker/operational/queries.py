"""Level 5, the operational router's statements on PostgreSQL (see
:mod:`worker.operational`)."""

from __future__ import annotations

__all__ = ["DELETE_EVENTS", "DROP_MESSAGE", "INSERT_MESSAGE", "TAKE_EVENTS"]

# The oldest events not being routed by another worker, with the application's uid (the
# sender's own id for it, as the sender's messages name it).
TAKE_EVENTS = """
    SELECT ev.id, ev.app_id, ev.event_type, ev.created_at,
           ev.data || jsonb_build_object('app_uid', a.uid) AS data
    FROM webhook_operational_events ev JOIN webhook_apps a ON a.id = ev.app_id
    ORDER BY ev.id
    LIMIT %(batch)s
    FOR UPDATE OF ev SKIP LOCKED
    """

INSERT_MESSAGE = """
    INSERT INTO webhook_messages (id, app_id, event_type, payload, body, request_hash, created_at)
    VALUES (%(id)s, %(app_id)s, %(event_type)s, %(payload)s, %(body)s, %(request_hash)s,
            %(created_at)s)
    """

# A message no operational endpoint of its application was subscribed to: nobody asked
# for it, so it is not kept (an application without operational endpoints gets none).
DROP_MESSAGE = "DELETE FROM webhook_messages WHERE id = %(id)s"

DELETE_EVENTS = "DELETE FROM webhook_operational_events WHERE id = ANY(%(ids)s)"
