"""Rows of the delivery tables, written straight to PostgreSQL, for the tests of
delivery's statements (``worker/delivery/queries.py``)."""

from __future__ import annotations

import uuid

__all__ = ["insert_endpoint", "insert_message", "lapse_lease"]


def insert_endpoint(conn, url: str = "http://hooks.test/x") -> str:
    endpoint_id = f"ep_{uuid.uuid4().hex}"
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, secret) VALUES (%s, %s, 'whsec_x')",
        (endpoint_id, url),
    )
    return endpoint_id


def insert_message(conn, endpoint_id: str | None = None) -> str:
    """A pending message, due now, on ``endpoint_id`` (a new endpoint if None)."""
    endpoint_id = endpoint_id or insert_endpoint(conn)
    message_id = f"msg_{uuid.uuid4().hex}"
    conn.execute(
        """INSERT INTO webhook_messages (id, endpoint_id, event_type, payload, body, request_hash,
                    status, next_attempt_at)
           VALUES (%s, %s, 't', '{}', '{"n":1}', 'h', 'pending', now())""",
        (message_id, endpoint_id),
    )
    return message_id


def lapse_lease(conn, message_id: str) -> None:
    """What a worker that died leaves: a claim whose lease ran out, nothing recorded."""
    conn.execute(
        "UPDATE webhook_messages SET claimed_until = now() - interval '1 second' WHERE id = %s",
        (message_id,),
    )
