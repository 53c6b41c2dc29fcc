"""Rows of the delivery tables, written straight to PostgreSQL, for the tests of
delivery's statements (``worker/delivery/queries.py``)."""

from __future__ import annotations

import uuid

__all__ = ["insert_delivery", "insert_endpoint", "insert_message", "lapse_lease"]


def insert_endpoint(conn, url: str = "http://hooks.test/x") -> str:
    endpoint_id = f"ep_{uuid.uuid4().hex}"
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, secret) VALUES (%s, %s, 'whsec_x')",
        (endpoint_id, url),
    )
    return endpoint_id


def insert_message(conn, message_id: str | None = None) -> str:
    """A message's content (no delivery yet)."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    conn.execute(
        """INSERT INTO webhook_messages (id, event_type, payload, body, request_hash)
           VALUES (%s, 't', '{}', '{"n":1}', 'h')""",
        (message_id,),
    )
    return message_id


def insert_delivery(
    conn, endpoint_id: str | None = None, message_id: str | None = None, status: str = "pending"
) -> str:
    """A delivery of a message (a new one if None) to ``endpoint_id`` (a new endpoint if
    None), due now when pending."""
    endpoint_id = endpoint_id or insert_endpoint(conn)
    hex_id = uuid.uuid4().hex
    message_id = message_id or insert_message(conn, f"msg_{hex_id}")
    delivery_id = f"dlv_{hex_id}"
    conn.execute(
        """INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, next_attempt_at)
           VALUES (%s, %s, %s, %s, CASE WHEN %s = 'pending' THEN now() END)""",
        (delivery_id, message_id, endpoint_id, status, status),
    )
    return delivery_id


def lapse_lease(conn, delivery_id: str) -> None:
    """What a worker that died leaves: a claim whose lease ran out, nothing recorded."""
    conn.execute(
        "UPDATE webhook_deliveries SET claimed_until = now() - interval '1 second' WHERE id = %s",
        (delivery_id,),
    )
