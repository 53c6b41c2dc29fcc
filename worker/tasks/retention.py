"""``jenga.retention.purge``: messages do not grow for ever (beat sends it every
``RETENTION_INTERVAL_SECONDS``, on the default queue).

Two steps, oldest first, each in batches of ``RETENTION_BATCH`` messages, one short
autocommit statement per batch (so no lock is held for long, and what a batch
takes is logged as ``longest_batch_ms``); rows another transaction holds are
skipped (``SKIP LOCKED``) and taken by the next run:

1. **content**: a finished message (no delivery of it pending) older than
   ``MESSAGE_RETENTION_DAYS`` loses its payload, its body and its attempts' response
   excerpts; it keeps its deliveries' status and attempt log and says
   ``expunged_at`` / ``expunge_reason: retention``;
2. **record**: a finished message older than ``ATTEMPT_RETENTION_DAYS`` is deleted
   with its deliveries and their attempts.

A message with a pending delivery is never purged (its schedule ends it first). A run stops
after :data:`RUN_SECONDS`; the next one goes on where it stopped.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task

from common.broker import RETENTION_TASK
from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.support.logs import log_event
from worker.delivery.resources import DB_ERRORS, execute

__all__ = ["RETENTION_TASK", "purge", "purge_expired"]

log = logging.getLogger("jenga.retention")

RUN_SECONDS = 60.0
DAY = 86400.0

# A message is finished when none of its deliveries is pending (a message no endpoint
# was subscribed to has none: finished at once). Written as NOT (SELECT EXISTS ...) so
# that PostgreSQL probes the partial index of pending deliveries once per message,
# oldest first, instead of planning an anti-join over every pending delivery.
FINISHED = """NOT (SELECT EXISTS (
            SELECT 1 FROM webhook_deliveries d
            WHERE d.message_id = m.id AND d.status = 'pending'))"""

EXPUNGE_BATCH = f"""
    WITH due AS (
        SELECT m.id FROM webhook_messages m
        WHERE m.expunged_at IS NULL
          AND m.created_at < now() - make_interval(secs => %(age)s)
          AND {FINISHED}
        ORDER BY m.created_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED),
    excerpts AS (
        UPDATE webhook_attempts a SET response_excerpt = NULL
        FROM webhook_deliveries d
        WHERE d.message_id IN (SELECT id FROM due) AND a.delivery_id = d.id
          AND a.response_excerpt IS NOT NULL)
    UPDATE webhook_messages m
    SET payload = NULL, body = '', expunged_at = now(), expunge_reason = 'retention'
    FROM due WHERE m.id = due.id
    RETURNING m.id
    """

# Deleting a message deletes its deliveries and their attempts (ON DELETE CASCADE).
DELETE_BATCH = f"""
    WITH due AS (
        SELECT m.id FROM webhook_messages m
        WHERE m.created_at < now() - make_interval(secs => %(age)s)
          AND {FINISHED}
        ORDER BY m.created_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED)
    DELETE FROM webhook_messages m USING due WHERE m.id = due.id
    RETURNING m.id
    """


def _batches(query: str, age_seconds: float, batch: int, deadline: float) -> tuple[int, float]:
    """Run ``query`` until a batch comes back short or ``deadline`` (monotonic) passes:
    how many rows it took, and the longest batch in ms."""
    done, longest = 0, 0.0
    while time.monotonic() < deadline:
        started = time.perf_counter()
        taken = len(execute(query, {"age": age_seconds, "batch": batch}))
        longest = max(longest, (time.perf_counter() - started) * 1000)
        done += taken
        if taken < batch:
            break
    return done, longest


def purge(settings: Settings, run_seconds: float = RUN_SECONDS) -> dict[str, float]:
    """One run of both steps (deletion first: what it deletes needs no expunging)."""
    deadline = time.monotonic() + run_seconds
    batch = settings.retention_batch
    deleted, delete_ms = _batches(
        DELETE_BATCH, settings.attempt_retention_days * DAY, batch, deadline
    )
    expunged, expunge_ms = _batches(
        EXPUNGE_BATCH, settings.message_retention_days * DAY, batch, deadline
    )
    return {
        "deleted": deleted,
        "expunged": expunged,
        "longest_batch_ms": round(max(delete_ms, expunge_ms), 1),
    }


@shared_task(name=RETENTION_TASK, ignore_result=True)
def purge_expired() -> dict[str, float] | None:
    settings = get_settings()
    try:
        counts = purge(settings)
    except DB_ERRORS as error:
        # PostgreSQL is down: its watchdog tells; the next run goes on.
        log_event(log, "retention.failed", logging.WARNING, error=describe_error(error))
        return None
    if counts["deleted"] or counts["expunged"]:
        log_event(log, "retention.purged", **counts)
    return counts
