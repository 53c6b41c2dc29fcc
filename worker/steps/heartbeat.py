"""Level 2 in the worker: a heartbeat from a thread of the main process (a
file and a Redis key with a TTL), independent of the pool, for ``jenga
worker health``."""

from __future__ import annotations

import contextlib
import logging
import math
import threading

import redis.exceptions
from celery import bootsteps

from common.alarms.beat_alarm import BeatAlarm
from common.alarms.dispatch import notify
from common.config import get_settings
from common.health.heartbeat import (
    STALE_AFTER_INTERVALS,
    beat_payload,
    heartbeat_key,
    heartbeat_path,
    publish_heartbeat,
    remove_heartbeat_file,
    retire_heartbeat,
    write_heartbeat_file,
)
from common.redis.client import redis_for
from worker.steps.breakers import BreakersStep
from worker.steps.connections import ConnectionsStep

__all__ = ["HeartbeatStep"]

log = logging.getLogger("jenga.worker")


class HeartbeatStep(bootsteps.StartStopStep):
    """Beats every ``HEARTBEAT_INTERVAL_SECONDS`` from its own thread; reads
    ``worker.jenga_connections`` and ``worker.jenga_breakers``."""

    label = "jenga heartbeat"
    requires = (ConnectionsStep, BreakersStep)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.settings = get_settings()
        self.redis = redis_for(self.settings)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_beat: float | None = None
        self.last_breakers: dict | None = None
        self.redis_ok: bool | None = None
        # Every worker watches beat; the alarm store's atomic checks tell people once.
        self.beat_alarm = BeatAlarm(self.redis, self.settings, lambda t: notify(t, app=worker.app))

    def start(self, worker):
        self.key = heartbeat_key(self.settings.jenga_namespace, worker.hostname)
        self.beat(worker)  # a first beat before the broker is even tried
        self.thread = threading.Thread(
            target=self._run, args=(worker,), name="jenga-heartbeat", daemon=True
        )
        self.thread.start()

    def _run(self, worker):
        while not self.stopping.wait(self.settings.heartbeat_interval_seconds):
            try:
                self.beat(worker)
            except Exception:  # never let the heartbeat thread die silently
                log.exception("heartbeat failed")

    def beat(self, worker) -> None:
        connections = worker.jenga_connections
        states = {n: s.state for n, s in connections.dependencies.snapshot().items()}
        interval = self.settings.heartbeat_interval_seconds
        breakers = worker.jenga_breakers.summary()
        payload = beat_payload(
            worker.hostname, interval, connections.consumer_connected, states, breakers=breakers
        )
        write_heartbeat_file(self.settings.heartbeat_dir, worker.hostname, payload)
        self.last_beat = payload["time"]
        self.last_breakers = breakers
        try:
            ttl = max(1, math.ceil(STALE_AFTER_INTERVALS * interval))
            publish_heartbeat(
                self.redis, self.settings.jenga_namespace, worker.hostname, payload, ttl
            )
            self.redis_ok = True
        except (redis.exceptions.RedisError, OSError):
            self.redis_ok = False  # Redis down: the file still proves liveness
        self.beat_alarm.check()

    def stop(self, worker):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None
        remove_heartbeat_file(self.settings.heartbeat_dir, worker.hostname)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            retire_heartbeat(self.redis, self.settings.jenga_namespace, worker.hostname)
        self.redis.close()

    def info(self, worker):
        return {
            "jenga_heartbeat": {
                "file": str(heartbeat_path(self.settings.heartbeat_dir, worker.hostname)),
                "key": heartbeat_key(self.settings.jenga_namespace, worker.hostname),
                "last_beat": self.last_beat,
                "redis_ok": self.redis_ok,
                "consumer_connected": worker.jenga_connections.consumer_connected,
                "breakers": self.last_breakers,
            }
        }
