"""Celery beat's schedule, built from settings as a plain dict.

Each watchdog runs every ``WATCHDOG_INTERVAL_SECONDS`` on the ``{ns}.alarms``
queue, with ``expires`` equal to that interval: while workers are down, the
runs they missed are dropped instead of piling up and all running at once when
they return (only the newest check says anything about now).

Other levels add their own entries here (e.g. the delivery sweeper).
"""

from __future__ import annotations

from typing import Any

from common.config import Settings

WATCHDOG_TASK = "jenga.watchdog.check"  # worker/watchdogs.py
DEPENDENCY_WATCHDOGS = ("postgres", "redis", "broker")


def watchdog_entries(settings: Settings, alarm_ids: tuple[str, ...] | list[str]) -> dict[str, dict[str, Any]]:
    """One beat entry per watchdog alarm id."""
    interval = settings.watchdog_interval_seconds
    queue = f"{settings.jenga_namespace}.alarms"
    return {
        f"watchdog-{alarm_id}": {
            "task": WATCHDOG_TASK,
            "schedule": interval,
            "args": (alarm_id,),
            "options": {"queue": queue, "expires": interval},
        }
        for alarm_id in alarm_ids
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Everything beat runs."""
    schedule: dict[str, dict[str, Any]] = {}
    schedule.update(watchdog_entries(settings, DEPENDENCY_WATCHDOGS))
    return schedule
