"""Beat watchdogs: one task run per dependency every ``WATCHDOG_INTERVAL_SECONDS``.

Each run makes one bounded check (:mod:`common.connections.probes`) and records it in the
fleet-wide :class:`~common.alarms.store.AlarmStore`; only the run whose atomic
record made a transition notifies, so two beats (or many workers) never tell
people twice. The hysteresis is :mod:`common.alarms.policy`'s.

Redis is the exception: when it is down, the store is unreachable too. This
process then decides with the same policy on a small local state, notifies
directly (not through the broker, which may be that same Redis), and writes
the alarm into the store, backdated, once Redis answers again; from then on
the store's hysteresis decides the clear, so the clear is told once. (While
Redis is down, two worker processes that both run the Redis watchdog each
tell about the outage; run the alarms queue on one worker process to avoid it.)

The broker watchdog runs in the beat process itself (:func:`run_watchdog_safely`,
started by :mod:`worker.beat_scheduler` for the entries marked ``IN_BEAT``), with
the same fallback: a broker that is down can carry no task, and when the broker
is the same Redis as the store, nothing else could tell about it.

Other levels add watchdogs for their own services with :func:`register_watchdog`
and beat entries from :func:`worker.schedule.watchdog_entries` (added in ``beat_schedule``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis

from common.alarms.dispatch import notify
from common.alarms.policy import CLOSED, AlarmState, decide
from common.alarms.store import AlarmStore, Transition
from common.broker import WATCHDOG_TASK
from common.config import Settings, get_settings
from common.connections.database import make_engine
from common.connections.probes import (
    CheckResult,
    check_broker,
    check_postgres,
    check_redis,
    describe_error,
)
from common.redis.client import redis_for
from common.support.logs import log_event
from common.support.per_process import PerProcess
from worker.app import app

log = logging.getLogger("jenga.watchdog")


@dataclass(frozen=True)
class Watchdog:
    """``check`` makes one bounded check; ``description`` names the alarm it raises."""

    alarm_id: str
    description: str
    check: Callable[[Settings], CheckResult]
    severity: str = "critical"


class _Clients:
    """This process's clients for the checks, made on first use (boot connects to
    nothing), one per URL; a forked pool process makes its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, object] = {}
        self._redis: dict[str, redis.Redis] = {}

    def engine(self, settings: Settings):
        with self._lock:
            if settings.database_url not in self._engines:
                self._engines[settings.database_url] = make_engine(settings, pool_size=1)
            return self._engines[settings.database_url]

    def redis(self, settings: Settings) -> redis.Redis:
        with self._lock:
            if settings.redis_url not in self._redis:
                self._redis[settings.redis_url] = redis_for(settings)
            return self._redis[settings.redis_url]


CLIENTS: PerProcess[_Clients] = PerProcess(_Clients)

# Declared once at import, like Celery's task registry: not process state, never reset.
WATCHDOGS: dict[str, Watchdog] = {}


def register_watchdog(watchdog: Watchdog) -> None:
    """Add (or replace) a watchdog; beat runs it when its alarm id is in the schedule."""
    WATCHDOGS[watchdog.alarm_id] = watchdog


register_watchdog(
    Watchdog(
        "postgres",
        "PostgreSQL is unreachable",
        lambda s: check_postgres(CLIENTS.get().engine(s), s.check_timeout_seconds),
    )
)
register_watchdog(
    Watchdog("redis", "Redis is unreachable", lambda s: check_redis(CLIENTS.get().redis(s)))
)
register_watchdog(
    Watchdog(
        "broker",
        "The Celery broker is unreachable",
        lambda s: check_broker(s.effective_broker_url, s.check_timeout_seconds),
    )
)


def store_for(settings: Settings) -> AlarmStore:
    return AlarmStore.for_settings(CLIENTS.get().redis(settings), settings)


def check_details(result: CheckResult) -> dict:
    details = {
        "ok": result.ok,
        "latency_seconds": round(result.latency_seconds, 4),
        "checked_at": result.checked_at,
    }
    if result.error:
        details["error"] = result.error
    return details


class LocalAlarm:
    """A watchdog's own state for while the store (Redis) is unreachable.

    ``pending`` is a set already told to people but not yet written to the store."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state: AlarmState = CLOSED
        self.pending: Transition | None = None


# Watchdogs whose outage can take the store (or the broker) down with it, and
# this process's own state for each.
FALLBACK: PerProcess[dict[str, LocalAlarm]] = PerProcess(
    lambda: {"redis": LocalAlarm(), "broker": LocalAlarm()}
)


def watch_with_fallback(
    settings: Settings, watchdog: Watchdog, store: AlarmStore, local: LocalAlarm
) -> Transition | None:
    """One run of the Redis or broker watchdog (see the module doc); returns the transition it told.

    The store decides whenever it answers; only when it does not does ``local``
    decide, and its set is written to the store (backdated) once it answers again."""
    result = watchdog.check(settings)
    details = check_details(result)
    if not result.ok:
        log_event(
            log,
            "watchdog.check",
            level=logging.WARNING,
            alarm_id=watchdog.alarm_id,
            ok=False,
            error=result.error,
        )
    try:
        with local.lock:
            pending = local.pending
        if pending is not None:
            # Already told; this only makes the store (and GET /alarms) know.
            store.set(
                pending.alarm_id,
                pending.description,
                pending.severity,
                pending.details,
                at=pending.at,
            )
            with local.lock:
                local.pending = None
        transition = store.record_check(
            watchdog.alarm_id, result.ok, watchdog.description, watchdog.severity, details
        )
        still_open = (transition is not None and transition.kind == "set") or (
            transition is None and store.is_open(watchdog.alarm_id)
        )
    except redis.RedisError as error:
        log_event(
            log,
            "watchdog.store_unavailable",
            level=logging.WARNING,
            alarm_id=watchdog.alarm_id,
            error=describe_error(error),
        )
        if result.ok:
            return None  # a clear needs the store's count of passing checks
        with local.lock:
            local.state, kind = decide(local.state, False, settings.alarm_clear_after)
            if kind:
                local.pending = Transition(
                    watchdog.alarm_id,
                    kind,
                    watchdog.description,
                    watchdog.severity,
                    result.checked_at,
                    details,
                    result.checked_at,
                )
            told = local.pending if kind else None
        if told:
            notify(told, direct=True, app=app)
        return told
    with local.lock:
        # Mirror the store, so a new outage is a new set only if the last one was cleared.
        local.state = AlarmState(open=True) if still_open else CLOSED
    if transition:
        # A broker that is down cannot carry the notification tasks.
        notify(transition, direct=not result.ok, app=app)
    return transition


def run_watchdog(alarm_id: str, settings: Settings | None = None) -> Transition | None:
    """One check of the named watchdog, recorded; returns the transition it caused and told."""
    settings = settings or get_settings()
    watchdog = WATCHDOGS.get(alarm_id)
    if watchdog is None:
        log_event(log, "watchdog.unknown", level=logging.ERROR, alarm_id=alarm_id)
        return None
    store = store_for(settings)
    local = FALLBACK.get().get(alarm_id)
    if local is not None:
        return watch_with_fallback(settings, watchdog, store, local)
    result = watchdog.check(settings)
    log_event(
        log,
        "watchdog.check",
        level=logging.DEBUG if result.ok else logging.WARNING,
        alarm_id=alarm_id,
        ok=result.ok,
        error=result.error,
    )
    try:
        transition = store.record_check(
            alarm_id, result.ok, watchdog.description, watchdog.severity, check_details(result)
        )
    except redis.RedisError as error:
        # The Redis watchdog reports Redis; this result is simply not stored.
        log_event(
            log,
            "watchdog.store_unavailable",
            level=logging.WARNING,
            alarm_id=alarm_id,
            error=describe_error(error),
        )
        return None
    if transition:
        notify(transition, app=app)
    return transition


def run_watchdog_safely(alarm_id: str, settings: Settings) -> None:
    """One run from beat itself (:data:`worker.schedule.IN_BEAT` entries, for the
    watchdogs that cannot travel as tasks: when the broker is down, beat cannot
    send them and no worker could receive them); an error is logged, never raised."""
    try:
        run_watchdog(alarm_id, settings)
    except Exception as error:  # one bad run must not end beat's thread quietly
        log_event(
            log,
            "watchdog.failed",
            level=logging.ERROR,
            alarm_id=alarm_id,
            error=describe_error(error),
        )


@app.task(name=WATCHDOG_TASK, ignore_result=True, acks_late=False)
def watchdog_task(alarm_id: str) -> None:
    """Beat's entry point: ``jenga.watchdog.check(alarm_id)``."""
    run_watchdog(alarm_id)
