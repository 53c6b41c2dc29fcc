"""Pausing an endpoint: its deliveries are kept, nothing is attempted, nothing is
failed (unlike disabling, which fails them), and resuming delivers them in order of
creation.

While paused, the endpoint's pending deliveries wait with ``next_attempt_at`` NULL
(outside the dispatcher's scan of due messages, however large the backlog); a
message accepted meanwhile is stored the same way. An attempt in flight when the
pause starts finishes and is recorded; a retry it schedules waits too (the
dispatcher and the claim skip a paused endpoint). Resuming makes them due at once,
a microsecond apart in order of creation (the dispatcher takes them in
``next_attempt_at`` order), and moves each message's ``give_up_at`` by the time the
pause lasted, so the pause never counts against the retry schedule.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["hold", "release"]

_HOLD = text(
    """
    WITH paused AS (
        UPDATE webhook_endpoints SET paused_at = COALESCE(paused_at, now())
        WHERE id = :endpoint_id
        RETURNING id)
    UPDATE webhook_deliveries m SET next_attempt_at = NULL, dispatched_at = NULL
    FROM paused
    WHERE m.endpoint_id = paused.id AND m.status = 'pending'
      AND (m.claimed_until IS NULL OR m.claimed_until < now())
    """
)

_RELEASE = text(
    """
    WITH resumed AS (
        SELECT id, paused_at FROM webhook_endpoints
        WHERE id = :endpoint_id AND paused_at IS NOT NULL
        FOR UPDATE),
    cleared AS (
        UPDATE webhook_endpoints e SET paused_at = NULL FROM resumed WHERE e.id = resumed.id),
    held AS (
        SELECT m.id, row_number() OVER (ORDER BY m.created_at, m.id) AS n
        FROM webhook_deliveries m, resumed
        WHERE m.endpoint_id = resumed.id AND m.status = 'pending'
          AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= now()))
    UPDATE webhook_deliveries m
    SET next_attempt_at = now() + make_interval(secs => held.n / 1000000.0),
        dispatched_at = NULL,
        give_up_at = m.give_up_at + (now() - resumed.paused_at)
    FROM held, resumed
    WHERE m.id = held.id
    """
)


def hold(session: Session, endpoint_id: str) -> None:
    """Pause the endpoint (in ``session``'s transaction; pausing twice changes nothing)."""
    session.execute(_HOLD, {"endpoint_id": endpoint_id})


def release(session: Session, endpoint_id: str) -> int:
    """Resume the endpoint: how many messages became due."""
    return session.execute(_RELEASE, {"endpoint_id": endpoint_id}).rowcount
