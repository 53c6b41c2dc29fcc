"""Level 3 on level 2: alarm ``beat`` (critical) when no beat runs the watchdogs.

A :class:`BeatAlarm` is one watcher: each :meth:`~BeatAlarm.check` reads the beat
hash, judges with :func:`common.health.beat_watch.observe` and records the result
as one check of alarm ``beat`` in the fleet's :class:`~common.alarms.store.AlarmStore`.
The store's transitions are atomic, so any number of watchers (every worker's
heartbeat thread) make one set per outage and one clear (after
``ALARM_CLEAR_AFTER`` passing checks) when a beat runs again, and only the
watcher whose check made the transition notifies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from common.alarms.store import AlarmStore, Transition
from common.config import Settings
from common.connections.probes import describe_error
from common.health.beat_store import BeatStore
from common.health.beat_watch import BeatVerdict, BeatWatch, observe, stale_after
from common.support.logs import log_event

__all__ = ["BEAT_ALARM", "BeatAlarm"]

BEAT_ALARM = "beat"
DESCRIPTION = "No beat is running the watchdogs"

log = logging.getLogger("jenga.alarms")


class BeatAlarm:
    """``notify`` tells people of a transition (:func:`common.alarms.dispatch.notify`);
    ``clock`` is this watcher's monotonic clock."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        notify: Callable[[Transition], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.beats = BeatStore(client, settings.jenga_namespace)
        self.alarms = AlarmStore.for_settings(client, settings)
        self.notify = notify
        self.clock = clock
        self.watch = BeatWatch()
        self.last: BeatVerdict | None = None

    def check(self) -> Transition | None:
        """One read, one recorded check (none while the verdict is unknown); returns
        the transition it made and told."""
        try:
            record, read_ok = self.beats.read(), True
        except (redis.RedisError, OSError):
            record, read_ok = None, False
        settings = self.settings
        limit = stale_after(
            settings.watchdog_interval_seconds,
            settings.beat_lock_ttl_seconds,
            settings.beat_lock_renew_seconds,
        )
        self.watch, verdict = observe(self.watch, record, read_ok, self.clock(), limit)
        self.last = verdict
        if verdict.kind == "unknown":
            return None
        details = {"ok": verdict.kind == "ok", "reason": verdict.reason}
        if record is not None:
            details["beat"] = record.to_dict()
        try:
            transition = self.alarms.record_check(
                BEAT_ALARM, verdict.kind == "ok", DESCRIPTION, "critical", details
            )
        except (redis.RedisError, OSError) as error:
            log_event(
                log,
                "alarm.beat_unrecorded",
                level=logging.WARNING,
                error=describe_error(error),
            )
            return None
        if transition is not None:
            self.notify(transition)
        return transition
