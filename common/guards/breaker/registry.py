"""Level 4: this process's circuit breakers, their flush thread and their pub/sub
listener; and the process's default registry, built from the settings.

The rules are those of :mod:`common.guards.breaker.policy`, run atomically in
Redis by ``policy.lua`` (:mod:`common.guards.breaker.store`), so when twenty
workers see the same outage the breaker trips once and exactly
``half_open_calls`` trial calls go out, fleet-wide. A background thread
flushes the breakers' buffered successes in batches every ``flush_interval`` s (a
failure is recorded at once by the calling thread, and the state answered adopted);
every process learns a transition through pub/sub, and re-reads the states of
the breakers used since the last time every ``refresh_seconds``, as a safety net
for a missed message (all of them after a reconnection).
Both loops visit only the breakers in use: those with outcomes to send, those
called since the last refresh. Redis down: every
breaker runs per process from the last known state (``breaker.fallback``), never
"closed"; back on the shared state when Redis answers. Transitions go to
``on_transition`` only in the process whose step made them, so alarms are set
and cleared once per incident.

A breaker not called for ``idle_evict_seconds`` (``GUARD_IDLE_EVICT_SECONDS``) is
dropped from the process (:meth:`BreakerRegistry.evict_idle`, run by the flush
thread every ``evict_interval``) once its outcomes are flushed; the next call
builds it again from the shared state in Redis. Nothing is dropped while Redis is
unreachable: the per-process fallback state (an open breaker, its counts) exists
nowhere else, and a rebuilt breaker could only start closed. A call still in
flight through a dropped breaker records normally (its outcome is flushed, its
trial-call lease reported); the ``SharedCircuitBreaker`` drop-in asks the registry
again once its breaker was dropped.

The default registry (:func:`default_registry`) sets and clears alarm
``breaker:<name>`` and reports to the hooks of :mod:`common.guards.breaker.hooks`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from common.config import get_settings
from common.connections.probes import describe_error
from common.guards.breaker import policy as bp
from common.guards.breaker.alarm import OnTransition, alarm_hook
from common.guards.breaker.breaker import SharedBreaker
from common.guards.breaker.hooks import (
    FallbackListener,
    notify_installed,
    report_fallback,
    set_alarm_notifier,
    set_fallback_listener,
)
from common.guards.breaker.policy import policy_from_settings
from common.guards.breaker.store import BreakerStore
from common.health.named_services import note_service
from common.redis.client import redis_for
from common.support.logs import log_event
from common.support.per_process import PerProcess

__all__ = [
    "BreakerRegistry",
    "FallbackListener",
    "current_registry",
    "default_registry",
    "policy_from_settings",
    "set_alarm_notifier",
    "set_default_registry",
    "set_fallback_listener",
]

log = logging.getLogger("jenga.breaker")


class BreakerRegistry:
    """This process's breakers, their flush thread and their pub/sub listener.

    ``policy`` is one :class:`~common.guards.breaker.policy.BreakerPolicy` for every
    breaker or a function of the breaker's name. ``clock`` (wall-clock seconds,
    shared by the fleet) and ``rand`` are injectable for tests. ``refusal_hold`` (s): once
    Redis refused a half-open breaker's call because every trial slot is taken, the
    process refuses locally for this long (or until a transition arrives) instead of
    asking again on every call (at most about 100 round trips a second per process).
    ``idle_evict_seconds``: a breaker not called for this long is dropped (see the module
    doc); :meth:`evict_idle` runs every ``evict_interval`` seconds."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        policy: bp.BreakerPolicy | Callable[[str], bp.BreakerPolicy] = bp.BreakerPolicy(),
        *,
        on_transition: OnTransition | None = None,
        on_fallback: FallbackListener | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        flush_interval: float = 0.05,
        refresh_seconds: float = 2.0,
        refusal_hold: float = 0.01,
        idle_evict_seconds: float = 600.0,
        evict_interval: float = 30.0,
    ):
        self.client = client
        self.namespace = namespace
        self.store = BreakerStore(client, namespace)
        self._policy = policy
        self.on_transition = on_transition
        self.on_fallback = on_fallback
        self.clock = clock
        self.rand = rand
        self.flush_interval = flush_interval
        self.refresh_seconds = refresh_seconds
        self.refusal_hold = refusal_hold
        self.idle_evict_seconds = idle_evict_seconds
        self.evict_interval = evict_interval
        self.fallback = False
        self.fallback_error: str | None = None
        self._breakers: dict[str, SharedBreaker] = {}
        self._lock = threading.Lock()  # creating and dropping breakers
        # The breakers the loops visit: with outcomes to flush, called since the last
        # refresh. Their own lock: creating a breaker holds _lock across a round trip.
        self._pending: set[SharedBreaker] = set()
        self._touched: set[SharedBreaker] = set()
        self._work_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def policy_for(self, name: str) -> bp.BreakerPolicy:
        return self._policy if isinstance(self._policy, bp.BreakerPolicy) else self._policy(name)

    def breaker(self, name: str, policy: bp.BreakerPolicy | None = None) -> SharedBreaker:
        """The breaker of service ``name``, created (closed, refreshed later) on first use."""
        found = self._breakers.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._breakers.get(name)
            if found is None:
                found = SharedBreaker(self, name, policy or self.policy_for(name))
                # A process starting mid-incident must not take "never seen" for
                # "closed": read the shared state once, on first use.
                try:
                    found.apply_state(self.store.read_state(name))
                    # Not a receiver: few, named by the code, always shown by name (/status).
                    note_service(self.client, self.namespace, name)
                except redis.RedisError as error:
                    self._breakers[name] = found
                    self.enter_fallback(error)
                    return found
                self._breakers[name] = found
            return found

    def breakers(self) -> list[SharedBreaker]:
        return list(self._breakers.values())

    def wake(self) -> None:
        self._wake.set()

    def touch(self, breaker: SharedBreaker) -> None:
        """``breaker`` is called again (its first call since the last refresh)."""
        breaker.last_used = self.clock()
        with self._work_lock:
            self._touched.add(breaker)

    def mark_pending(self, breaker: SharedBreaker) -> None:
        """``breaker`` has outcomes for the next flush."""
        with self._work_lock:
            self._pending.add(breaker)

    def evict_idle(self) -> list[str]:
        """Drop the breakers not called for ``idle_evict_seconds`` and with nothing left
        to flush (none while Redis is unreachable); the names dropped."""
        if self.fallback:
            return []
        now = self.clock()
        evicted = []
        with self._lock:
            for name, breaker in list(self._breakers.items()):
                if (
                    breaker.touched
                    or breaker.has_pending
                    or now - breaker.last_used < self.idle_evict_seconds
                ):
                    continue
                breaker.evicted = True
                del self._breakers[name]
                evicted.append(name)
        if evicted:
            log_event(log, "breaker.evicted", count=len(evicted), kept=len(self._breakers))
        return evicted

    # --- background work ------------------------------------------------------
    def start(self) -> BreakerRegistry:
        for target, label in ((self._flush_loop, "flush"), (self._listen_loop, "listen")):
            thread = threading.Thread(target=target, name=f"jenga-breaker-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(5)
        self._threads.clear()
        self.flush()

    def flush(self) -> None:
        """Send every buffered outcome in one pipelined round trip; trip in Lua if a rule fires."""
        with self._work_lock:
            marked, self._pending = self._pending, set()
        batches = [(b, b.take_pending()) for b in marked]
        batches = [(b, p) for b, p in batches if p.calls]
        if not batches:
            return
        if self.fallback:
            for breaker, pending in batches:
                breaker.record_locally(pending)
            return
        try:
            replies = self.store.record_many(
                [(b.name, b.policy, p) for b, p in batches], self.clock(), self.rand
            )
        except redis.RedisError as error:
            self.enter_fallback(error)
            for breaker, pending in batches:
                breaker.record_locally(pending)
            return
        for (breaker, _), reply in zip(batches, replies, strict=True):
            breaker.handle_reply(reply)

    def refresh(self, everything: bool = False) -> None:
        """Re-read the shared state of the breakers called since the last refresh (the
        safety net for a missed pub/sub message); of every breaker with ``everything``
        and while in fallback (the way back must leave no breaker on a stale state)."""
        with self._work_lock:
            touched, self._touched = self._touched, set()
        for breaker in touched:
            breaker.touched = False  # before the read: a call from now on touches it again
        breakers = self.breakers() if everything or self.fallback else list(touched)
        try:
            states = self.store.read_states([b.name for b in breakers])
            if not breakers:
                self.client.ping()
        except redis.RedisError as error:
            self.enter_fallback(error)
            return
        for breaker, state in zip(breakers, states, strict=True):
            breaker.apply_state(state)
        if self.fallback:
            self.fallback = False
            self.fallback_error = None
            log_event(log, "breaker.fallback_ended", namespace=self.namespace)
            self._fallback_changed()

    def enter_fallback(self, error: BaseException) -> None:
        if self.fallback:
            return
        for breaker in self.breakers():
            breaker.start_local()
        self.fallback_error = describe_error(error)
        self.fallback = True
        log_event(
            log,
            "breaker.fallback",
            logging.WARNING,
            namespace=self.namespace,
            error=self.fallback_error,
            detail="Redis unreachable: breakers run per process until it answers again",
        )
        self._fallback_changed()

    def _fallback_changed(self) -> None:
        if self.on_fallback is None:
            return
        try:
            self.on_fallback(self.fallback, self.fallback_error)
        except Exception as error:  # reporting must never break the call path
            log_event(
                log, "breaker.fallback_hook_failed", logging.ERROR, error=describe_error(error)
            )

    def transitioned(
        self, name: str, change: bp.Change, state: bp.BreakerState, local_only: bool = False
    ) -> None:
        event = "breaker.opened" if change.new == bp.OPEN else "breaker.closed"
        fields: dict[str, Any] = {"breaker": name, "reason": change.reason, "previous": change.old}
        if change.new == bp.OPEN and not state.forced:
            fields["open_seconds"] = round(max(0.0, state.open_until - self.clock()), 3)
        log_event(
            log,
            event,
            logging.WARNING if change.new == bp.OPEN else logging.INFO,
            scope="process" if local_only else "fleet",
            **fields,
        )
        if self.on_transition is not None and not local_only:
            try:
                self.on_transition(name, change)
            except Exception as error:  # an alarm hook must never break the call path
                log_event(
                    log,
                    "breaker.transition_hook_failed",
                    logging.ERROR,
                    breaker=name,
                    error=describe_error(error),
                )

    def _flush_loop(self) -> None:
        next_refresh = time.monotonic() + self.refresh_seconds
        next_eviction = time.monotonic() + self.evict_interval
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.refresh_seconds
                    self.refresh()
                if time.monotonic() >= next_eviction:
                    next_eviction = time.monotonic() + self.evict_interval
                    self.evict_idle()
            except Exception as error:  # keep the thread alive whatever happens
                log_event(log, "breaker.flush_failed", logging.ERROR, error=describe_error(error))

    def _listen_loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.store.channel)
                attempt = 0
                # Catch up on what happened while we were not subscribed.
                if self._breakers:
                    self.refresh(everything=True)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self._on_message(message["data"])
            except (redis.RedisError, OSError) as error:
                self.enter_fallback(error)
                attempt += 1
                pause = min(self.refresh_seconds, 0.1 * 2 ** min(attempt, 6))
                self._stop.wait(pause * (0.5 + random.random() / 2))
            finally:
                try:
                    pubsub.close()
                except Exception:  # closing a broken connection may fail too; nothing to do
                    pass

    def _on_message(self, data: str) -> None:
        try:
            event = json.loads(data)
            breaker = self._breakers.get(event["name"])
            if breaker is not None:
                breaker.apply_event(
                    event["state"], float(event["open_until"]), str(event["forced"]) in ("1", "1.0")
                )
        except (ValueError, KeyError, TypeError) as error:
            log_event(log, "breaker.bad_event", logging.WARNING, error=describe_error(error))

    def snapshot(self) -> dict[str, Any]:
        return {
            "fallback": self.fallback,
            "fallback_error": self.fallback_error,
            "breakers": [b.snapshot() for b in self.breakers()],
        }


# --- the process's default registry ---------------------------------------------


def _registry_from_settings() -> BreakerRegistry:
    settings = get_settings()
    client = redis_for(settings)
    return BreakerRegistry(
        client,
        settings.jenga_namespace,
        policy_from_settings(settings),
        on_transition=alarm_hook(client, settings, notify_installed),
        on_fallback=report_fallback,
        idle_evict_seconds=settings.guard_idle_evict_seconds,
    ).start()


_default: PerProcess[BreakerRegistry] = PerProcess(_registry_from_settings)


def default_registry() -> BreakerRegistry:
    """This process's registry, built from the settings on first use (again after a fork:
    threads do not survive one). Transitions set and clear alarm ``breaker:<name>`` and
    go to the notifier installed with :func:`set_alarm_notifier`."""
    return _default.get()


def current_registry() -> BreakerRegistry | None:
    """This process's registry if something has used a breaker here, without building one."""
    return _default.peek()


def set_default_registry(registry: BreakerRegistry | None) -> None:
    """Install (or forget) this process's registry; for tests and embedders."""
    _default.set(registry)
