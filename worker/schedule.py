"""Celery beat's schedule, built from settings as a plain dict.

Each watchdog runs every ``WATCHDOG_INTERVAL_SECONDS`` on the ``{ns}.alarms``
queue, with ``expires`` equal to that interval: while workers are down, the
runs they missed are dropped instead of piling up and all running at once when
they return (only the newest check says anything about now).

The watchdogs in :data:`BEAT_WATCHDOGS` are entries too, marked :data:`IN_BEAT`:
beat runs them itself instead of sending them.

Beat schedules only while it holds the beat lease (:mod:`worker.beat_scheduler`);
the entries in :data:`WITHOUT_LEASE` are the exception, sent by every beat while
Redis (where the lease lives) cannot be reached, since they are the checks that
tell about exactly that.

Other levels add their own entries here (e.g. the delivery sweeper).
"""

from __future__ import annotations

from typing import Any

from common.broker import (
    DISPATCH_TASK,
    JOBS_TASK,
    OPERATIONAL_ROUTE_TASK,
    RETENTION_TASK,
    WATCHDOG_TASK,
    queue_names,
)
from common.config import Settings

DEPENDENCY_WATCHDOGS = ("postgres", "redis")
# Run inside the beat process itself (worker/tasks/watchdogs.py): a broker that is
# down can carry no watchdog task, so its watchdog must not need it.
BEAT_WATCHDOGS = ("broker",)
# An entry option: run by beat itself, never sent to the broker.
IN_BEAT = "jenga_in_beat"


def watchdog_entry_name(alarm_id: str) -> str:
    return f"watchdog-{alarm_id}"


# The watchdogs of the lease's own store and of the broker: every beat runs them while
# Redis is unreachable (no beat can hold the lease then; the alarm store's local
# fallback in worker/tasks/watchdogs.py keeps them from telling twice per process).
WITHOUT_LEASE = frozenset(watchdog_entry_name(a) for a in ("redis", "broker"))


def watchdog_entries(
    settings: Settings, alarm_ids: tuple[str, ...] | list[str]
) -> dict[str, dict[str, Any]]:
    """One beat entry per watchdog alarm id."""
    interval = settings.watchdog_interval_seconds
    queue = queue_names(settings.jenga_namespace)["alarms"]
    return {
        watchdog_entry_name(alarm_id): {
            "task": WATCHDOG_TASK,
            "schedule": interval,
            "args": (alarm_id,),
            "options": {"queue": queue, "expires": interval},
        }
        for alarm_id in alarm_ids
    }


def in_beat_entries(
    settings: Settings, alarm_ids: tuple[str, ...] | list[str]
) -> dict[str, dict[str, Any]]:
    """One entry per watchdog that beat runs itself (:data:`IN_BEAT`)."""
    return {
        watchdog_entry_name(alarm_id): {
            "task": WATCHDOG_TASK,
            "schedule": settings.watchdog_interval_seconds,
            "args": (alarm_id,),
            "options": {IN_BEAT: True},
        }
        for alarm_id in alarm_ids
    }


def delivery_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """The delivery dispatcher: enqueues due messages and re-enqueues lost ones.
    On the default queue, so a delivery backlog never delays it; missed runs
    expire, since the next run sees everything that is due."""
    interval = settings.delivery_dispatch_interval_seconds
    return {
        "delivery-dispatch": {
            "task": DISPATCH_TASK,
            "schedule": interval,
            "options": {
                "queue": queue_names(settings.jenga_namespace)["default"],
                "expires": max(interval * 2, 1.0),
            },
        }
    }


def retention_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """The retention purge (worker/tasks/retention.py), on the default queue; a missed
    run expires, the next one does its work."""
    interval = settings.retention_interval_seconds
    return {
        "retention-purge": {
            "task": RETENTION_TASK,
            "schedule": interval,
            "options": {
                "queue": queue_names(settings.jenga_namespace)["default"],
                "expires": interval,
            },
        }
    }


def jobs_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """The tick of recover and bulk-retry jobs (worker/jobs/tasks.py), as often as the
    dispatcher. On the deliveries queue: it needs PostgreSQL, and a backed-up queue
    delays it (a missed tick expires), so a job yields to live traffic."""
    interval = settings.delivery_dispatch_interval_seconds
    return {
        "jobs-advance": {
            "task": JOBS_TASK,
            "schedule": interval,
            "options": {
                "queue": queue_names(settings.jenga_namespace)["deliveries"],
                "expires": max(interval * 2, 1.0),
            },
        }
    }


def operational_entries(settings: Settings) -> dict[str, dict[str, Any]]:
    """The operational events' router (worker/operational), as often as the dispatcher,
    on the operational queue: it needs PostgreSQL, and the sender's backlog on the
    deliveries queue must not hold back the news of it."""
    interval = settings.delivery_dispatch_interval_seconds
    return {
        "operational-route": {
            "task": OPERATIONAL_ROUTE_TASK,
            "schedule": interval,
            "options": {
                "queue": queue_names(settings.jenga_namespace)["operational"],
                "expires": max(interval * 2, 1.0),
            },
        }
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Everything beat runs."""
    schedule: dict[str, dict[str, Any]] = {}
    schedule.update(watchdog_entries(settings, DEPENDENCY_WATCHDOGS))
    schedule.update(in_beat_entries(settings, BEAT_WATCHDOGS))
    schedule.update(delivery_entries(settings))
    schedule.update(retention_entries(settings))
    schedule.update(jobs_entries(settings))
    schedule.update(operational_entries(settings))
    return schedule
