"""Celery beat's schedule, built from settings as a plain dict.

Each watchdog runs every ``WATCHDOG_INTERVAL_SECONDS`` on the ``{ns}.alarms``
queue, with ``expires`` equal to that interval: while workers are down, the
runs they missed are dropped instead of piling up and all running at once when
they return (only the newest check says anything about now).

Other levels add their own entries here (e.g. the delivery sweeper).
"""

from __future__ import annotations

from typing import Any

from common.broker import DISPATCH_TASK, WATCHDOG_TASK, queue_names
from common.config import Settings

DEPENDENCY_WATCHDOGS = ("postgres", "redis")
# Run inside the beat process itself (worker/tasks/watchdogs.py): a broker that is
# down can carry no watchdog task, so its watchdog must not need it.
BEAT_WATCHDOGS = ("broker",)


def watchdog_entries(
    settings: Settings, alarm_ids: tuple[str, ...] | list[str]
) -> dict[str, dict[str, Any]]:
    """One beat entry per watchdog alarm id."""
    interval = settings.watchdog_interval_seconds
    queue = queue_names(settings.jenga_namespace)["alarms"]
    return {
        f"watchdog-{alarm_id}": {
            "task": WATCHDOG_TASK,
            "schedule": interval,
            "args": (alarm_id,),
            "options": {"queue": queue, "expires": interval},
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


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Everything beat runs."""
    schedule: dict[str, dict[str, Any]] = {}
    schedule.update(watchdog_entries(settings, DEPENDENCY_WATCHDOGS))
    schedule.update(delivery_entries(settings))
    return schedule
