"""Level 5: ``jenga.jobs.advance``, the tick that moves every unfinished job on (see
:mod:`worker.jobs` for the story).

Beat sends it every ``DELIVERY_DISPATCH_INTERVAL_SECONDS`` on the deliveries queue.
The ``RECOVER_RATE_PER_SECOND`` is shared by the (at most :data:`MAX_JOBS`) oldest
unfinished jobs, so together they never make more deliveries due than that; each
fills its schedule :func:`ahead` of now and gives its lease back. A tick lasts at
most :data:`TICK_SECONDS`, so it never holds a worker thread (or a warm shutdown)
for long.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

from common.broker import JOBS_TASK
from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.support.logs import log_event
from worker.app import app
from worker.delivery.resources import DB_ERRORS
from worker.jobs.queries import claim, count_total, finish, release, requeue_step, unfinished

__all__ = ["JOBS_TASK", "MAX_JOBS", "TICK_SECONDS", "advance", "advance_all", "advance_jobs"]

log = logging.getLogger("jenga.jobs")

# Jobs advanced at once, oldest first; later ones wait their turn.
MAX_JOBS = 10
TICK_SECONDS = 10.0


def ahead(settings: Settings) -> timedelta:
    """How far past now a job fills its schedule: two ticks, so a tick a little late
    leaves no gap, and at least a second."""
    return timedelta(seconds=max(2 * settings.delivery_dispatch_interval_seconds, 1.0))


def advance(job_id: str, rate: float, settings: Settings, deadline: float) -> int:
    """One tick of one job, at ``rate`` a second, until its schedule is filled, it is
    done, or ``deadline`` (monotonic) passes: how many deliveries it re-queued."""
    claimed = claim(job_id)
    if claimed is None:
        return 0  # finished, or another worker is advancing it
    token, job = claimed
    requeued = 0
    try:
        if job["endpoint_id"] is not None and job["endpoint_disabled"] is not False:
            state = "deleted" if job["endpoint_disabled"] is None else "disabled"
            error = f"endpoint {job['endpoint_id']} was {state}; enable it and start a new job"
            if finish(job_id, token, "failed", error):
                log_event(log, "job.failed", logging.WARNING, job_id=job_id, error=error)
            return 0
        if job["total"] is None:
            total = count_total(job, token, settings)
            log_event(log, "job.started", job_id=job_id, kind=job["kind"], total=total)
        while time.monotonic() < deadline:
            step = requeue_step(job_id, token, rate, ahead(settings), settings)
            requeued += step.requeued
            if step.outcome in ("ahead", "finished", "lost"):
                break
    finally:
        # Best effort: a lease not given back lapses after LEASE_SECONDS.
        with contextlib.suppress(*DB_ERRORS):
            release(job_id, token)
    return requeued


def advance_all(settings: Settings, tick_seconds: float = TICK_SECONDS) -> int:
    """One tick of every unfinished job (the oldest :data:`MAX_JOBS`): how many
    deliveries they re-queued."""
    jobs = unfinished(MAX_JOBS)
    if not jobs:
        return 0
    rate = settings.recover_rate_per_second / len(jobs)
    deadline = time.monotonic() + tick_seconds
    return sum(advance(job_id, rate, settings, deadline) for job_id in jobs)


@app.task(name=JOBS_TASK, ignore_result=True)
def advance_jobs() -> int:
    settings = get_settings()
    try:
        return advance_all(settings)
    except DB_ERRORS as error:
        # PostgreSQL is down: its watchdog tells; the next tick goes on where this stopped.
        log_event(log, "job.tick_failed", logging.WARNING, error=describe_error(error))
        return 0
