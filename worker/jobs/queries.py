"""Level 5, a job's statements on PostgreSQL: lease a job, count what it will do,
re-queue one batch of its deliveries, go on to the next endpoint, finish.

One batch (:func:`requeue_step`) is one transaction, in this order of locks: the
job's row (its lease must still be ours), then the batch's messages (``FOR SHARE``,
by id), then the deliveries. The messages' lock is what keeps a privacy request
(``DELETE …/content``, which locks the message first too) from expunging a message
while one of its deliveries is made pending again: whichever comes second sees the
other's work (an expunged message is skipped; a re-queued delivery of a message
being expunged is failed by it). The same order as the API's single-message retry,
so they wait for each other instead of deadlocking. The retention purge never
touches the same messages (:data:`common.delivery.recover_window.RETENTION_MARGIN`).

The cursor (endpoint, then ``(created_at, id)`` of the last delivery taken) moves in
the batch's own transaction: a delivery is taken once, whoever holds the lease next.

A cancel (``POST …/jobs/{id}/cancel``) sets the job ``cancelled`` and clears its lease in
one UPDATE of the job's row. A batch locks that row first and goes on only if the job is
still ``running`` under its token (:data:`LOCK_JOB`), so the cancel waits for a batch in
progress and no batch after it re-queues anything: the worker's next step is ``lost``.
Every other statement on the job names the token, so none touches a cancelled job.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from common.config import Settings
from common.delivery.recover_pace import due_slots
from common.delivery.recover_window import recoverable_age
from common.support.logs import log_event
from worker.delivery.resources import execute, transaction

__all__ = [
    "BATCH",
    "LEASE_SECONDS",
    "Step",
    "claim",
    "count_total",
    "finish",
    "release",
    "requeue_step",
    "unfinished",
]

log = logging.getLogger("jenga.jobs")

# Deliveries one statement re-queues at most: each batch is its own short transaction.
BATCH = 500
# How long a job stays a worker's after its last statement; a dead worker's job is
# resumed by the first tick after it lapses.
LEASE_SECONDS = 30.0

UNFINISHED = """
    SELECT id FROM webhook_jobs WHERE status IN ('queued', 'running')
    ORDER BY created_at, id LIMIT %(limit)s
    """

CLAIM = """
    UPDATE webhook_jobs j
    SET lease_token = %(token)s, leased_until = now() + make_interval(secs => %(lease)s),
        status = 'running', started_at = COALESCE(j.started_at, now())
    WHERE j.id = %(id)s AND j.status IN ('queued', 'running')
      AND (j.leased_until IS NULL OR j.leased_until < now())
    RETURNING j.id, j.app_id, j.kind, j.endpoint_id, j.event_type, j.since, j.until, j.total,
              (SELECT e.disabled FROM webhook_endpoints e WHERE e.id = j.endpoint_id)
                AS endpoint_disabled
    """

# What a job re-queues of a failed delivery's message: its content is still there, it is
# not within RETENTION_MARGIN of the purge, and it is of the job's event type.
RECOVERABLE = """m.expunged_at IS NULL
      AND m.created_at >= now() - make_interval(secs => %(age)s)
      AND (CAST(%(event_type)s AS text) IS NULL OR m.event_type = %(event_type)s)"""

# A job of one endpoint counts it even disabled (it is then failed, not done); a job of
# the whole application counts the endpoints it will go through.
COUNT = f"""
    SELECT count(*) AS n
    FROM webhook_endpoints e
    JOIN webhook_deliveries d ON d.endpoint_id = e.id
    JOIN webhook_messages m ON m.id = d.message_id
    WHERE e.app_id = %(app)s
      AND (CAST(%(endpoint)s AS text) IS NULL AND NOT e.disabled OR e.id = %(endpoint)s)
      AND d.status = 'failed' AND d.created_at >= %(since)s AND d.created_at < %(until)s
      AND {RECOVERABLE}
    """

SET_TOTAL = """
    UPDATE webhook_jobs SET total = %(total)s
    WHERE id = %(id)s AND lease_token = %(token)s AND total IS NULL
    """

LOCK_JOB = """
    SELECT id, app_id, endpoint_id, event_type, until, cursor_endpoint_id, cursor_created_at,
           cursor_delivery_id, due_frontier, now() AS now
    FROM webhook_jobs
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'running'
    FOR UPDATE
    """

# Through ix_webhook_deliveries_endpoint_failed: one endpoint's failed deliveries after
# the cursor, in order of creation.
PICK = f"""
    SELECT d.id, d.message_id, d.created_at
    FROM webhook_deliveries d JOIN webhook_messages m ON m.id = d.message_id
    WHERE d.endpoint_id = %(endpoint)s AND d.status = 'failed'
      AND (d.created_at, d.id) > (%(after_at)s, %(after_id)s) AND d.created_at < %(until)s
      AND {RECOVERABLE}
    ORDER BY d.created_at, d.id
    LIMIT %(limit)s
    """

# A message expunged meanwhile (a privacy request that held it) is left out.
HOLD_MESSAGES = """
    SELECT id FROM webhook_messages
    WHERE id = ANY(%(ids)s) AND expunged_at IS NULL
    ORDER BY id
    FOR SHARE
    """

# As the API's single-message retry: a new round of the schedule. A paused endpoint's
# delivery waits with the rest of its backlog (no next_attempt_at) until it resumes.
# Still failed: a retry of it meanwhile has made it pending already. Locked in id order,
# so two jobs over the same deliveries (an endpoint's and its application's) wait for
# each other instead of deadlocking.
REQUEUE = """
    WITH locked AS (
        SELECT d.id, q.due, e.paused_at IS NOT NULL AS paused
        FROM unnest(CAST(%(ids)s AS text[]), CAST(%(due)s AS timestamptz[])) AS q(id, due)
        JOIN webhook_deliveries d ON d.id = q.id
        JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'failed'
        ORDER BY d.id
        FOR UPDATE OF d)
    UPDATE webhook_deliveries d
    SET status = 'pending', schedule_position = 0, give_up_at = NULL, retry_requested = false,
        rate_slot_at = NULL, dispatched_at = NULL,
        next_attempt_at = CASE WHEN NOT locked.paused THEN locked.due END
    FROM locked
    WHERE d.id = locked.id
    RETURNING d.id
    """

ADVANCE = """
    UPDATE webhook_jobs
    SET done_count = done_count + %(requeued)s,
        cursor_created_at = %(after_at)s, cursor_delivery_id = %(after_id)s,
        due_frontier = %(frontier)s, leased_until = now() + make_interval(secs => %(lease)s)
    WHERE id = %(id)s
    """

NEXT_ENDPOINT = """
    SELECT id FROM webhook_endpoints
    WHERE app_id = %(app)s AND id > %(after)s AND NOT disabled
    ORDER BY id
    LIMIT 1
    """

MOVE = """
    UPDATE webhook_jobs
    SET cursor_endpoint_id = %(endpoint)s, cursor_created_at = since, cursor_delivery_id = '',
        leased_until = now() + make_interval(secs => %(lease)s)
    WHERE id = %(id)s
    """

FINISH = """
    UPDATE webhook_jobs
    SET status = %(status)s, error = CAST(%(error)s AS text), finished_at = now(),
        lease_token = NULL, leased_until = NULL
    WHERE id = %(id)s AND lease_token = %(token)s
    RETURNING done_count, total
    """

RELEASE = """
    UPDATE webhook_jobs SET lease_token = NULL, leased_until = NULL
    WHERE id = %(id)s AND lease_token = %(token)s
    """


@dataclass(frozen=True)
class Step:
    """What one :func:`requeue_step` did: ``requeued`` (this many), ``ahead`` (the
    schedule is filled far enough for now), ``moved`` (on to the next endpoint),
    ``finished`` (nothing left: the job is done) or ``lost`` (the lease is not ours, or
    the job was cancelled)."""

    outcome: str
    requeued: int = 0


def unfinished(limit: int) -> list[str]:
    """The unfinished jobs, oldest first."""
    return [row["id"] for row in execute(UNFINISHED, {"limit": limit})]


def claim(job_id: str) -> tuple[str, dict[str, Any]] | None:
    """Take the job's lease (a fresh token) unless another worker holds it or it is
    finished; the token and the job's filter."""
    token = uuid.uuid4().hex
    rows = execute(CLAIM, {"id": job_id, "token": token, "lease": LEASE_SECONDS})
    return (token, rows[0]) if rows else None


def _filter_params(job: dict[str, Any], settings: Settings) -> dict[str, Any]:
    age = recoverable_age(settings.message_retention_days, settings.attempt_retention_days)
    return {"age": age.total_seconds(), "event_type": job["event_type"]}


def count_total(job: dict[str, Any], token: str, settings: Settings) -> int:
    """Count the job's deliveries (once, before the first batch) and store the count."""
    params = {
        **_filter_params(job, settings),
        "app": job["app_id"],
        "endpoint": job["endpoint_id"],
        "since": job["since"],
        "until": job["until"],
    }
    total = execute(COUNT, params)[0]["n"]
    execute(SET_TOTAL, {"id": job["id"], "token": token, "total": total})
    return total


def requeue_step(
    job_id: str, token: str, rate: float, ahead: timedelta, settings: Settings
) -> Step:
    """Re-queue the job's next batch, as many as its pace allows now (at most
    :data:`BATCH`), in one transaction with the job's cursor and ``done_count``."""
    with transaction() as conn:
        job = conn.execute(LOCK_JOB, {"id": job_id, "token": token}).fetchone()
        if job is None:
            return Step("lost")
        slots = due_slots(job["due_frontier"], job["now"], rate, ahead)
        if slots.count == 0:
            return Step("ahead")
        picked = conn.execute(
            PICK,
            {
                **_filter_params(job, settings),
                "endpoint": job["cursor_endpoint_id"],
                "after_at": job["cursor_created_at"],
                "after_id": job["cursor_delivery_id"],
                "until": job["until"],
                "limit": min(slots.count, BATCH),
            },
        ).fetchall()
        if not picked:
            return _next_endpoint(conn, job, token)
        messages = sorted({row["message_id"] for row in picked})
        held = {row["id"] for row in conn.execute(HOLD_MESSAGES, {"ids": messages})}
        chosen = [row["id"] for row in picked if row["message_id"] in held]
        requeued = (
            conn.execute(REQUEUE, {"ids": chosen, "due": slots.times(len(chosen))}).fetchall()
            if chosen
            else []
        )
        conn.execute(
            ADVANCE,
            {
                "id": job_id,
                "requeued": len(requeued),
                "after_at": picked[-1]["created_at"],
                "after_id": picked[-1]["id"],
                "frontier": slots.frontier_after(len(chosen)),
                "lease": LEASE_SECONDS,
            },
        )
        return Step("requeued", len(requeued))


def _next_endpoint(conn: psycopg.Connection, job: dict[str, Any], token: str) -> Step:
    """The current endpoint has nothing left: on to the application's next enabled one
    (a job of the whole application), else the job is done."""
    if job["endpoint_id"] is None:
        following = conn.execute(
            NEXT_ENDPOINT, {"app": job["app_id"], "after": job["cursor_endpoint_id"]}
        ).fetchone()
        if following is not None:
            conn.execute(
                MOVE, {"id": job["id"], "endpoint": following["id"], "lease": LEASE_SECONDS}
            )
            return Step("moved")
    row = conn.execute(
        FINISH, {"id": job["id"], "token": token, "status": "done", "error": None}
    ).fetchone()
    log_event(log, "job.done", job_id=job["id"], done_count=row["done_count"] if row else None)
    return Step("finished")


def finish(job_id: str, token: str, status: str, error: str | None = None) -> bool:
    """End the job (``done`` or ``failed`` with ``error``) if its lease is still ours."""
    rows = execute(FINISH, {"id": job_id, "token": token, "status": status, "error": error})
    return bool(rows)


def release(job_id: str, token: str) -> None:
    """Give the lease back at the end of a tick: the next tick may run anywhere."""
    execute(RELEASE, {"id": job_id, "token": token})
