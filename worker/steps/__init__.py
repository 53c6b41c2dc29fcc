"""Worker bootsteps: the worker's start-up order as a declared graph.

``ConfigStep`` comes first: settings are loaded, validated and applied to the
app before Celery's consumer step opens the broker connection. Then
``ConnectionsStep`` (dependency monitors, the deliveries queue gate),
``BreakersStep`` (breaker alarms notify people; breaker fallback is reported)
and ``HeartbeatStep``; in the consumer blueprint ``ConsumerStateStep`` records
whether the broker is connected. ``JengaConsumer`` (setting
``worker_consumer``) retries the broker with backoff and full jitter.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time

import redis.exceptions
from celery import bootsteps
from celery.worker.consumer import Consumer
from celery.worker.state import maybe_shutdown
from kombu.exceptions import OperationalError

from common.config import describe_settings, get_settings
from common.connections.database import make_engine
from common.connections.dependency import Dependencies
from common.connections.probes import describe_error
from common.guards.breaker.shared import set_alarm_notifier, set_fallback_listener
from common.health.heartbeat import (
    STALE_AFTER_INTERVALS,
    beat_payload,
    breakers_summary,
    clear_breaker_fallback,
    heartbeat_key,
    heartbeat_path,
    mark_breaker_fallback,
    read_breaker_fallback,
    remove_heartbeat_file,
    write_heartbeat_file,
)
from common.redis.client import redis_for
from common.support.backoff import full_jitter_backoff
from common.support.logs import configure_logging, log_event
from common.support.masking import mask_url
from worker.celeryconfig import celery_config, queue_names

log = logging.getLogger("jenga.worker")


class ConfigStep(bootsteps.StartStopStep):
    """Level 0: config before connect. A bad configuration stops the worker
    here, with the one message of :class:`~common.config.ConfigError`."""

    label = "jenga config"

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.settings = get_settings()  # exits with the message on bad config
        worker.app.conf.update(celery_config(self.settings))
        configure_logging(self.settings.log_format, self.settings.log_level)

    def start(self, worker):
        log_event(log, "config.loaded", namespace=self.settings.jenga_namespace)

    def info(self, worker):
        return {"jenga_config": {"state": "loaded", "namespace": self.settings.jenga_namespace,
                                 "broker": describe_settings(self.settings)["BROKER_URL"]}}


# --- level 1: connections ----------------------------------------------------

_dependencies: Dependencies | None = None


def current_dependencies() -> Dependencies | None:
    """The dependency monitors of this worker process (None outside a worker)."""
    return _dependencies


class QueueGate:
    """Consumes ``queues`` only while their dependency is up, so their tasks
    wait in the broker during an outage instead of piling up as retries.

    Decisions arrive from a monitor thread; changes to the consumer are made on
    the consumer's own event loop (``hub.call_soon``), never from that thread."""

    def __init__(self, app, queues: list[str]):
        self.app = app
        self.queues = queues
        self.open = False  # closed until the dependency is first seen up
        self.consumer = None

    def close_before_start(self) -> None:
        if self.queues:
            self.app.amqp.queues.deselect(self.queues)

    def set_open(self, open_: bool) -> None:
        if open_ == self.open:
            return
        self.open = open_
        if not self.queues:
            return
        log_event(log, "worker.queues_resumed" if open_ else "worker.queues_paused",
                  logging.INFO if open_ else logging.WARNING, queues=",".join(self.queues))
        consumer = self.consumer
        hub = getattr(consumer, "hub", None) if consumer is not None else None
        if hub is not None:
            hub.call_soon(self.apply)
        elif consumer is None:
            self._select()  # not connected: the next consumer start picks this up

    def _select(self) -> None:
        queues = self.app.amqp.queues
        for name in self.queues:
            if self.open:
                queues.select_add(queues[name])
            else:
                queues.deselect(name)

    def attach(self, consumer) -> None:
        """Called from the consumer's start, before its event loop runs. Adding
        a queue there would start consuming before Celery has set the task
        handler (``asynloop`` does that): py-amqp hands the waiting messages to
        a consumer with no callback and the worker dies. So the change waits
        for the loop's first turn."""
        self.consumer = consumer
        hub = getattr(consumer, "hub", None)
        if hub is not None:
            hub.call_soon(self.apply)
        else:
            self.apply()

    def detach(self) -> None:
        self.consumer = None

    def apply(self) -> None:
        """Runs on the consumer's thread: make the consumer match ``open``."""
        consumer = self.consumer
        task_consumer = getattr(consumer, "task_consumer", None)
        if task_consumer is None:
            self._select()
            return
        for name in self.queues:
            consuming = task_consumer.consuming_from(name)
            if self.open and not consuming:
                consumer.add_task_queue(name)
            elif not self.open and consuming:
                consumer.cancel_task_queue(name)


class ConnectionsStep(bootsteps.StartStopStep):
    """Level 1 in the worker's main process: PostgreSQL, Redis and broker
    monitors that start disconnected and never block boot; the queues whose
    tasks need PostgreSQL are consumed only while it is up."""

    label = "jenga connections"
    requires = (ConfigStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.settings = get_settings()
        self.engine = make_engine(self.settings, pool_size=1)
        self.redis = redis_for(self.settings)
        self.dependencies = Dependencies.from_settings(self.settings, engine=self.engine, redis=self.redis)
        needs_postgres = [queue_names(self.settings)["deliveries"]]
        selected = worker.app.amqp.queues.consume_from
        self.gate = QueueGate(worker.app, [q for q in needs_postgres if q in selected])
        worker.jenga_connections = self

    def start(self, worker):
        global _dependencies
        self.gate.close_before_start()
        self.dependencies["postgres"].on_change(lambda old, new: self.gate.set_open(new.up))
        _dependencies = self.dependencies
        self.dependencies.start()

    def stop(self, worker):
        global _dependencies
        self.dependencies.stop()
        _dependencies = None
        self.engine.dispose()
        self.redis.close()

    def info(self, worker):
        return {"jenga_connections": {
            "dependencies": {name: s.as_dict() for name, s in self.dependencies.snapshot().items()},
            "gated_queues": self.gate.queues,
            "gated_queues_consumed": self.gate.open,
        }}


class ConsumerStateStep(bootsteps.StartStopStep):
    """Consumer blueprint: records whether the consumer is connected to the
    broker (for the heartbeat) and applies the queue gate after each
    (re)connection, once the task consumer exists."""

    label = "jenga consumer state"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c):
        connections = getattr(c.controller, "jenga_connections", None)
        if connections is not None:
            connections.gate.attach(c)
        c.controller.jenga_consumer_connected = True
        log_event(log, "worker.consumer_connected", broker=mask_url(c.connection.as_uri()))

    def stop(self, c):
        self._disconnected(c)

    def shutdown(self, c):
        self._disconnected(c)

    def _disconnected(self, c):
        connections = getattr(c.controller, "jenga_connections", None)
        if connections is not None:
            connections.gate.detach()
        c.controller.jenga_consumer_connected = False

    def info(self, c):
        return {"jenga_consumer": {"connected": bool(getattr(c.controller, "jenga_consumer_connected", False))}}


class JengaConsumer(Consumer):
    """Celery's consumer with broker (re)connects spaced by backoff with full
    jitter, bounded by ``RECONNECT_CAP_SECONDS``. Kombu's own schedule
    (2, 4, 6 ... 30 s, identical in every process) would keep a worker deaf
    for up to 30 s after the broker returns and reconnect a fleet in lock step."""

    def ensure_connected(self, conn):
        conf = self.app.conf
        first = self.first_connection_attempt
        retry = conf.broker_connection_retry_on_startup if first else conf.broker_connection_retry
        if retry is False or retry is None and first and not conf.broker_connection_retry:
            return super().ensure_connected(conn)
        settings = get_settings()
        attempt = 0
        while True:
            maybe_shutdown()
            try:
                conn.ensure_connection(max_retries=0)
                break
            except conn.recoverable_connection_errors + (OperationalError, OSError) as error:
                delay = full_jitter_backoff(attempt, settings.reconnect_base_seconds, settings.reconnect_cap_seconds)
                attempt += 1
                self.broker_connection_retry_attempt = attempt
                log_event(log, "broker.connect_failed", logging.ERROR, broker=mask_url(conn.as_uri()),
                          error=describe_error(error), attempt=attempt, retry_in=round(delay, 3))
                self._sleep(delay)
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn

    @staticmethod
    def _sleep(seconds: float) -> None:
        # In slices, so a shutdown signal is honoured while the broker is away.
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            maybe_shutdown()
            time.sleep(min(0.25, remaining))


# --- level 4: breaker hooks --------------------------------------------------

def notify_people(transition) -> None:
    """Hand a breaker alarm's transition to the notifiers (Slack, webhook)."""
    # Imported late: worker.tasks.notifications imports the app, which loads this module.
    try:
        from worker.tasks.notifications import notify
    except ImportError:  # notifications level not installed: the alarm is still in Redis
        return
    notify(transition)


class BreakersStep(bootsteps.StartStopStep):
    """Installs this worker's breaker hooks before the pool starts, so forked pool
    processes inherit them: an opening or closing breaker notifies people whichever
    code (``GuardedTask`` or ``SharedCircuitBreaker``) built the process's registry,
    and a process whose breakers fall back to per-process state leaves a marker
    that the heartbeat and ``inspect stats`` report."""

    label = "jenga breakers"
    requires = (ConfigStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.directory = get_settings().heartbeat_dir
        self.hostname = worker.hostname
        clear_breaker_fallback(self.directory, self.hostname)  # a previous run's markers say nothing now
        set_alarm_notifier(notify_people)
        set_fallback_listener(self.report)

    def report(self, fallback: bool, error: str | None) -> None:
        """Runs in the process whose registry changed (a pool child under prefork)."""
        if fallback:
            mark_breaker_fallback(self.directory, self.hostname, os.getpid(), error)
        else:
            clear_breaker_fallback(self.directory, self.hostname, os.getpid())

    def start(self, worker):
        pass

    def stop(self, worker):
        clear_breaker_fallback(self.directory, self.hostname)

    def summary(self) -> dict:
        return breakers_summary(read_breaker_fallback(self.directory, self.hostname))

    def info(self, worker):
        return {"jenga_breakers": self.summary()}


# --- level 2: heartbeat ------------------------------------------------------

class HeartbeatStep(bootsteps.StartStopStep):
    """A heartbeat from a thread of the main process (file + Redis key with a
    TTL), independent of the pool, for ``jenga worker health``."""

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

    def start(self, worker):
        self.hostname = worker.hostname
        self.key = heartbeat_key(self.settings.jenga_namespace, worker.hostname)
        self.beat(worker)  # a first beat before the broker is even tried
        self.thread = threading.Thread(target=self._run, args=(worker,), name="jenga-heartbeat", daemon=True)
        self.thread.start()

    def _run(self, worker):
        while not self.stopping.wait(self.settings.heartbeat_interval_seconds):
            try:
                self.beat(worker)
            except Exception:  # never let the heartbeat thread die silently
                log.exception("heartbeat failed")

    def beat(self, worker) -> None:
        connections = getattr(worker, "jenga_connections", None)
        states = ({n: s.state for n, s in connections.dependencies.snapshot().items()}
                  if connections is not None else {})
        interval = self.settings.heartbeat_interval_seconds
        breakers = breakers_summary(read_breaker_fallback(self.settings.heartbeat_dir, worker.hostname))
        payload = beat_payload(worker.hostname, interval, bool(getattr(worker, "jenga_consumer_connected", False)),
                               states, breakers=breakers)
        write_heartbeat_file(self.settings.heartbeat_dir, worker.hostname, payload)
        self.last_beat = payload["time"]
        self.last_breakers = breakers
        try:
            ttl = max(1, math.ceil(STALE_AFTER_INTERVALS * interval))
            self.redis.set(self.key, json.dumps(payload), ex=ttl)
            self.redis_ok = True
        except (redis.exceptions.RedisError, OSError):
            self.redis_ok = False  # Redis down: the file still proves liveness

    def stop(self, worker):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
            self.thread = None
        remove_heartbeat_file(self.settings.heartbeat_dir, worker.hostname)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            self.redis.delete(self.key)
        self.redis.close()

    def info(self, worker):
        return {"jenga_heartbeat": {
            "file": str(heartbeat_path(self.settings.heartbeat_dir, worker.hostname)),
            "key": heartbeat_key(self.settings.jenga_namespace, worker.hostname),
            "last_beat": self.last_beat,
            "redis_ok": self.redis_ok,
            "consumer_connected": bool(getattr(worker, "jenga_consumer_connected", False)),
            "breakers": self.last_breakers,
        }}
