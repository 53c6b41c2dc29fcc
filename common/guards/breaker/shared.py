"""Fleet-wide circuit breakers: state in Redis, decisions in one Lua script.

One :class:`BreakerRegistry` per process holds a :class:`SharedBreaker` per
external service. The rules are those of :mod:`common.guards.breaker.policy`; the Lua
script (``breaker.lua``) runs them atomically in Redis, so when twenty
workers see the same outage the breaker trips once and exactly
``half_open_calls`` trial calls go out, fleet-wide.

Hot path. ``admit()`` on a closed breaker reads a cached state and makes no
Redis round trip; ``record()`` appends to an in-process buffer. A background
thread flushes the buffers in batches (at once when a failure arrives, else
every ``flush_interval`` s) and runs the trip decision in Lua on the
aggregated window. Every process learns a transition through pub/sub, and
re-reads all states every ``refresh_seconds`` as a safety net for a missed
message. Only calls that need the fleet's consent (half-open trial calls, and
the first call after the open time) talk to Redis; once every trial slot is
taken, a process that was refused refuses locally for ``refusal_hold`` (10 ms)
before asking again, so a busy half-open breaker costs Redis at most about
100 round trips a second per process, not one per refused call.

Redis down. The registry switches to per-process breakers (the same rules,
run locally from the last known state), logs ``breaker.fallback`` and reports
``fallback: true``; it never treats "cannot reach Redis" as "closed". When
Redis answers again it goes back to the shared state.

Transitions (``closed -> open``, ``-> closed``) are reported to
``on_transition(name, change)`` only in the process whose Lua step made them,
so alarms are set and cleared once per incident.

The process's default registry (:func:`default_registry`) sets and clears
alarm ``breaker:<name>`` and hands the alarm's transition to the notifier the
hosting process installed with :func:`set_alarm_notifier` (the worker does it
at start, before its pool forks); its fallback changes go to the listener of
:func:`set_fallback_listener` (the worker's heartbeat reports them). Both are
looked up when used, so whichever code builds the registry first
(``GuardedTask`` or the ``SharedCircuitBreaker`` drop-in) gets the same hooks.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import uuid
from asyncio import iscoroutinefunction
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from circuitbreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerMonitor

from common.connections.probes import describe_error
from common.guards.breaker import policy as bp
from common.redis.keys import RedisKeys
from common.support.logs import log_event
from common.support.per_process import PerProcess

log = logging.getLogger("jenga.breaker")

SCRIPT = (Path(__file__).parent / "policy.lua").read_text()
POLICY_FIELDS = ("failure_threshold", "failure_rate", "min_calls", "window_seconds", "slow_call_rate",
                 "open_seconds", "open_max_seconds", "half_open_calls", "lease_seconds", "jitter", "buckets")

Transition = Callable[[str, bp.Change], None]


def channel(namespace: str) -> str:
    return RedisKeys(namespace).key("breaker", "events")


# Names an operator may force (API and CLI): service names such as
# `webhook:hooks.example.com:8443` or `webhook:[::1]:8080`; no spaces, no braces.
BREAKER_NAME_RE = re.compile(r"[A-Za-z0-9_.:\[\]\-]{1,200}")
BREAKER_NAME_RULE = "use 1-200 of A-Z a-z 0-9 _ . : - [ ]"


def breaker_keys(namespace: str, name: str) -> list[str]:
    keys = RedisKeys(namespace)
    return [keys.key("breaker", name), keys.key("breaker", name, "window"), keys.key("breaker", name, "leases"),
            keys.key("breakers")]


def policy_from_settings(settings: Any) -> bp.BreakerPolicy:
    """The breaker policy the ``BREAKER_*`` settings describe."""
    return bp.BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        failure_rate=settings.breaker_failure_rate,
        min_calls=settings.breaker_min_calls,
        window_seconds=settings.breaker_window_seconds,
        slow_call_seconds=settings.breaker_slow_call_seconds,
        slow_call_rate=settings.breaker_slow_call_rate,
        open_seconds=settings.breaker_open_seconds,
        open_max_seconds=settings.breaker_open_max_seconds,
        half_open_calls=settings.breaker_half_open_calls,
        lease_seconds=settings.breaker_probe_lease_seconds,
    )


def _state_from_reply(reply: list[str]) -> bp.BreakerState:
    return bp.BreakerState(
        state=reply[0], open_until=float(reply[1]), trips=int(float(reply[2])), total_trips=int(float(reply[3])),
        consecutive=int(float(reply[4])), forced=reply[5] == "1", probe_successes=int(float(reply[12])), reason=reply[13],
    )


def state_from_hash(raw: dict[str, str]) -> bp.BreakerState:
    """A breaker's stored state (``HGETALL`` of its key); empty means never used: closed."""
    if not raw:
        return bp.BreakerState()
    return bp.BreakerState(
        state=raw.get("state", bp.CLOSED), open_until=float(raw.get("open_until", 0)),
        trips=int(float(raw.get("trips", 0))), total_trips=int(float(raw.get("total_trips", 0))),
        consecutive=int(float(raw.get("consecutive", 0))), probe_successes=int(float(raw.get("probe_successes", 0))),
        forced=raw.get("forced", "0") in ("1", "1.0"), reason=raw.get("reason", ""),
    )


class BreakerStore:
    """The Redis side: one Lua step per call. Used by the registry, the API and the CLI."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.namespace = namespace
        self.channel = channel(namespace)
        self._script = client.register_script(SCRIPT)

    def step(self, name: str, policy: bp.BreakerPolicy, op: str, now: float, u: float = 0.0, arg: str = "",
             batch: tuple[int, int, int, int] = (0, 0, 0, 0), client: Any = None) -> list[str]:
        args = [op, name, repr(now), repr(u), arg, *(repr(getattr(policy, f)) for f in POLICY_FIELDS),
                *(str(n) for n in batch), self.channel]
        return self._script(keys=breaker_keys(self.namespace, name), args=args, client=client)

    def names(self) -> list[str]:
        return sorted(self.client.smembers(RedisKeys(self.namespace).key("breakers")))

    def read(self, name: str) -> dict[str, Any]:
        """A breaker's state for people: state (half-open once the open time is over), counts, probes."""
        keys = breaker_keys(self.namespace, name)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys[0])
        pipe.hgetall(keys[1])
        pipe.hgetall(keys[2])
        raw, window, leases = pipe.execute()
        state = state_from_hash(raw)
        now = time.time()
        shown = state.state
        if shown == bp.OPEN and not state.forced and now >= state.open_until:
            shown = bp.HALF_OPEN
        totals = {"c": 0, "f": 0, "s": 0}
        for field, value in window.items():
            totals[field[0]] = totals.get(field[0], 0) + int(value)
        return {
            "name": name,
            "kind": "breaker",
            "state": shown,
            "forced": state.forced,
            "open_remaining_seconds": round(max(0.0, state.open_until - now), 3) if shown == bp.OPEN and not state.forced else None,
            "trips": state.trips,
            "total_trips": state.total_trips,
            "consecutive_failures": state.consecutive,
            "window": {"calls": totals["c"], "failures": totals["f"], "slow": totals["s"]},
            "probes_in_flight": sum(1 for expires in leases.values() if float(expires) > now),
            "reason": state.reason,
            "changed_at": float(raw["changed_at"]) if raw.get("changed_at") else None,
        }

    def force(self, name: str, action: str, policy: bp.BreakerPolicy, now: float | None = None) -> tuple[bp.BreakerState, bp.Change | None]:
        """An operator's open/close/reset, applied atomically and announced to every process."""
        if action not in ("open", "close", "reset"):
            raise ValueError(f"unknown action {action!r}: use open, close or reset")
        reply = self.step(name, policy, "force", time.time() if now is None else now, arg=action)
        state = _state_from_reply(reply)
        change = bp.Change(reply[7], state.state, reply[8]) if reply[6] == "1" else None
        return state, change


class SharedBreaker:
    """One external service's breaker, as seen by this process."""

    def __init__(self, registry: BreakerRegistry, name: str, policy: bp.BreakerPolicy):
        self.registry = registry
        self.name = name
        self.policy = policy
        # Cached shared state: replaced whole (one attribute store), so the hot
        # path reads a consistent pair without a lock.
        self._cached: tuple[str, float, bool] = (bp.CLOSED, 0.0, False)
        self._known = bp.BreakerState()
        self._local: bp.BreakerState | None = None  # per-process state while Redis is unreachable
        # (until, retry_at): after Redis said "every trial slot is taken", refuse locally until
        # ``until`` instead of a round trip per refused call (see BreakerRegistry.refusal_hold).
        self._hold: tuple[float, float] = (0.0, 0.0)
        self._lock = threading.Lock()
        self._pending = bp.Outcomes()
        self.last_failure: BaseException | None = None

    # --- hot path -----------------------------------------------------------
    def admit(self) -> bp.Admission:
        """May a call go out now? Refusals carry ``retry_in``; a half-open
        admission carries a ``probe`` lease to pass back to :meth:`record`."""
        state, open_until, forced = self._cached
        if state == bp.CLOSED and not self.registry.fallback:
            return bp.ADMITTED
        return self._admit_slow(state, open_until, forced)

    def record(self, failed: bool, latency: float | None = None, admission: bp.Admission = bp.ADMITTED) -> None:
        """The outcome of an admitted call; ``latency`` (s) marks it slow past ``slow_call_seconds``."""
        slow = latency is not None and latency >= self.policy.slow_call_seconds
        if admission.probe is not None:
            self._record_probe(admission.probe, failed or slow)
            return
        if self.registry.fallback:
            self._record_local(bp.Outcomes().plus(failed, slow))
            return
        with self._lock:
            self._pending = self._pending.plus(failed, slow)
        if failed:
            self.registry.wake()

    # --- slow path ------------------------------------------------------------
    def _admit_slow(self, state: str, open_until: float, forced: bool) -> bp.Admission:
        now = self.registry.clock()
        if self.registry.fallback:
            return self._admit_local(now)
        if state == bp.OPEN and (forced or now < open_until):
            # Still open by the cached state: refuse without asking Redis.
            return bp.Admission(False, retry_in=self.policy.open_seconds if forced else open_until - now)
        until, retry_at = self._hold
        if now < until:
            return bp.Admission(False, retry_in=max(0.0, retry_at - now))
        try:
            reply = self.registry.store.step(self.name, self.policy, "admit", now, arg=uuid.uuid4().hex)
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            return self._admit_local(now)
        self._apply(_state_from_reply(reply))
        if reply[9] == "1":
            return bp.Admission(True, probe=reply[10] or None)
        retry_in = max(0.0, float(reply[11]))
        if reply[0] == bp.HALF_OPEN:
            # Only an expiring lease (at retry_in at the earliest) or a published
            # transition (which clears the hold) can free a slot: asking again at
            # once would be a round trip per refused call.
            self._hold = (now + min(self.registry.refusal_hold, retry_in), now + retry_in)
        return bp.Admission(False, retry_in=retry_in)

    def _record_probe(self, lease: str, failed: bool) -> None:
        now = self.registry.clock()
        if self.registry.fallback:
            self._record_local_probe(lease, failed, now)
            return
        try:
            reply = self.registry.store.step(self.name, self.policy, "probe", now, self.registry.rand(), lease,
                                             (1, int(failed), 0, int(failed)))
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            self._record_local_probe(lease, failed, now)
            return
        self._handle_reply(reply)

    def take_pending(self) -> bp.Outcomes:
        with self._lock:
            pending, self._pending = self._pending, bp.Outcomes()
        return pending

    def _handle_reply(self, reply: list[str]) -> None:
        state = _state_from_reply(reply)
        self._apply(state)
        if reply[6] == "1":
            self.registry.transitioned(self.name, bp.Change(reply[7], state.state, reply[8]), state)

    def _apply(self, state: bp.BreakerState) -> None:
        self._known = state
        self._cached = (state.state, state.open_until, state.forced)
        self._hold = (0.0, 0.0)

    def apply_event(self, state: str, open_until: float, forced: bool) -> None:
        self._known = replace(self._known, state=state, open_until=open_until, forced=forced)
        self._cached = (state, open_until, forced)
        self._hold = (0.0, 0.0)

    # --- per-process fallback -------------------------------------------------
    def start_local(self) -> None:
        with self._lock:
            self._local = replace(self._known, window=(), leases=())

    def _admit_local(self, now: float) -> bp.Admission:
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, admission = bp.admit(self.policy, local, now, uuid.uuid4().hex)
        return admission

    def _record_local(self, batch: bp.Outcomes) -> None:
        now = self.registry.clock()
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, change = bp.record(self.policy, local, batch, now, self.registry.rand())
        if change:
            self.registry.transitioned(self.name, change, self._local, local_only=True)

    def _record_local_probe(self, lease: str, failed: bool, now: float) -> None:
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, change = bp.record_probe(self.policy, local, lease, failed, now, self.registry.rand())
        if change:
            self.registry.transitioned(self.name, change, self._local, local_only=True)

    # --- reporting ------------------------------------------------------------
    @property
    def state(self) -> str:
        """closed, open or half_open, as this process sees it now."""
        known = self._local if self.registry.fallback and self._local is not None else self._known
        return bp.settle(self.policy, known, self.registry.clock()).state

    def snapshot(self) -> dict[str, Any]:
        known = self._local if self.registry.fallback and self._local is not None else self._known
        now = self.registry.clock()
        settled = bp.settle(self.policy, known, now)
        return {
            "name": self.name, "state": settled.state, "fallback": self.registry.fallback,
            "forced": settled.forced, "trips": settled.trips, "consecutive_failures": settled.consecutive,
            "open_remaining_seconds": max(0.0, settled.open_until - now) if settled.state == bp.OPEN and not settled.forced else None,
        }


class BreakerRegistry:
    """This process's breakers, their flush thread and their pub/sub listener.

    ``policy`` is one :class:`~common.guards.breaker.policy.BreakerPolicy` for every
    breaker or a function of the breaker's name. ``clock`` (wall-clock seconds,
    shared by the fleet) and ``rand`` are injectable for tests. ``refusal_hold`` (s): once
    Redis refused a half-open breaker's call because every trial slot is taken, the
    process refuses locally for this long (or until a transition arrives) instead of
    asking again on every call."""

    def __init__(self, client: redis.Redis, namespace: str,
                 policy: bp.BreakerPolicy | Callable[[str], bp.BreakerPolicy] = bp.BreakerPolicy(), *,
                 on_transition: Transition | None = None,
                 on_fallback: Callable[[bool, str | None], None] | None = None,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random,
                 flush_interval: float = 0.05, refresh_seconds: float = 2.0, refusal_hold: float = 0.01):
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
        self.fallback = False
        self.fallback_error: str | None = None
        self._breakers: dict[str, SharedBreaker] = {}
        self._lock = threading.Lock()
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
                    found._apply(state_from_hash(self.client.hgetall(breaker_keys(self.namespace, name)[0])))
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
        batches = [(b, b.take_pending()) for b in self.breakers()]
        batches = [(b, p) for b, p in batches if p.calls]
        if not batches:
            return
        if self.fallback:
            for breaker, pending in batches:
                breaker._record_local(pending)
            return
        now = self.clock()
        try:
            pipe = self.client.pipeline(transaction=False)
            for breaker, pending in batches:
                self.store.step(breaker.name, breaker.policy, "record", now, self.rand(), "",
                                (pending.calls, pending.failures, pending.slow, pending.trailing_failures), client=pipe)
            replies = pipe.execute()
        except redis.RedisError as error:
            self.enter_fallback(error)
            for breaker, pending in batches:
                breaker._record_local(pending)
            return
        for (breaker, _), reply in zip(batches, replies, strict=True):
            breaker._handle_reply(reply)

    def refresh(self) -> None:
        """Re-read every breaker's shared state (the safety net for a missed pub/sub message)."""
        breakers = self.breakers()
        try:
            pipe = self.client.pipeline(transaction=False)
            for breaker in breakers:
                pipe.hgetall(breaker_keys(self.namespace, breaker.name)[0])
            raws = pipe.execute() if breakers else []
            if not breakers:
                self.client.ping()
        except redis.RedisError as error:
            self.enter_fallback(error)
            return
        for breaker, raw in zip(breakers, raws, strict=True):
            breaker._apply(state_from_hash(raw))
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
        log_event(log, "breaker.fallback", logging.WARNING, namespace=self.namespace, error=self.fallback_error,
                  detail="Redis unreachable: breakers run per process until it answers again")
        self._fallback_changed()

    def _fallback_changed(self) -> None:
        if self.on_fallback is None:
            return
        try:
            self.on_fallback(self.fallback, self.fallback_error)
        except Exception as error:  # reporting must never break the call path
            log_event(log, "breaker.fallback_hook_failed", logging.ERROR, error=describe_error(error))

    def transitioned(self, name: str, change: bp.Change, state: bp.BreakerState, local_only: bool = False) -> None:
        event = "breaker.opened" if change.new == bp.OPEN else "breaker.closed"
        fields: dict[str, Any] = {"breaker": name, "reason": change.reason, "previous": change.old}
        if change.new == bp.OPEN and not state.forced:
            fields["open_seconds"] = round(max(0.0, state.open_until - self.clock()), 3)
        log_event(log, event, logging.WARNING if change.new == bp.OPEN else logging.INFO,
                  scope="process" if local_only else "fleet", **fields)
        if self.on_transition is not None and not local_only:
            try:
                self.on_transition(name, change)
            except Exception as error:  # an alarm hook must never break the call path
                log_event(log, "breaker.transition_hook_failed", logging.ERROR, breaker=name, error=describe_error(error))

    def _flush_loop(self) -> None:
        next_refresh = time.monotonic() + self.refresh_seconds
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
                if time.monotonic() >= next_refresh:
                    next_refresh = time.monotonic() + self.refresh_seconds
                    self.refresh()
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
                    self.refresh()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        self._on_message(message["data"])
            except (redis.RedisError, OSError) as error:
                self.enter_fallback(error)
                attempt += 1
                self._stop.wait(min(self.refresh_seconds, 0.1 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2))
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
                breaker.apply_event(event["state"], float(event["open_until"]), str(event["forced"]) in ("1", "1.0"))
        except (ValueError, KeyError, TypeError) as error:
            log_event(log, "breaker.bad_event", logging.WARNING, error=describe_error(error))

    def snapshot(self) -> dict[str, Any]:
        return {"fallback": self.fallback, "fallback_error": self.fallback_error,
                "breakers": [b.snapshot() for b in self.breakers()]}



def fleet_overview(client: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every breaker and limit of ``namespace``, read from Redis (``GET /breakers``,
    ``jenga breakers``). Raises ``redis.RedisError`` when Redis is unreachable."""
    store = BreakerStore(client, namespace)
    try:
        from common.guards.limit.shared import list_limits
    except ImportError:  # limiter level not installed
        limits: list[dict[str, Any]] = []
    else:
        limits = list_limits(client, namespace)
    return {"fallback": False, "breakers": [store.read(name) for name in store.names()], "limits": limits}


# --- the process's default registry ---------------------------------------------

Notify = Callable[[Any], None]
FallbackListener = Callable[[bool, "str | None"], None]

# Installed by the hosting process (the worker, at start: worker/steps/__init__.py) and
# looked up when used, so it does not matter which code builds the registry first
# (a SharedCircuitBreaker or a GuardedTask): alarms always reach people.
_alarm_notifier: Notify | None = None
_fallback_listener: FallbackListener | None = None


def set_alarm_notifier(notify: Notify | None) -> None:
    """Who this process tells about a breaker alarm's set/clear (``None``: nobody; the alarm is still set)."""
    global _alarm_notifier
    _alarm_notifier = notify


def set_fallback_listener(listener: FallbackListener | None) -> None:
    """Told ``(fallback, error)`` when this process's default registry enters or leaves per-process fallback."""
    global _fallback_listener
    _fallback_listener = listener


def _notify_installed(transition: Any) -> None:
    notify = _alarm_notifier
    if notify is not None:
        notify(transition)


def _report_fallback(fallback: bool, error: str | None) -> None:
    listener = _fallback_listener
    if listener is not None:
        listener(fallback, error)


def alarm_hook(client: redis.Redis, namespace: str, notify: Callable[[Any], None] | None = None) -> Transition:
    """An ``on_transition`` that sets alarm ``breaker:<name>`` when a breaker opens
    and clears it when it closes, then hands the alarm transition to ``notify``."""

    def on_transition(name: str, change: bp.Change) -> None:
        try:
            from common.alarms.store import AlarmStore
        except ImportError:  # alarms level not installed: the log line is all we can do
            return
        store = AlarmStore(client, namespace)
        alarm_id = f"breaker:{name}"
        if change.new == bp.OPEN:
            transition = store.set(alarm_id, f"circuit breaker {name!r} is open: {change.reason}",
                                   severity="critical", details={"breaker": name, "reason": change.reason})
        else:
            transition = store.clear(alarm_id, details={"breaker": name, "reason": change.reason})
        if transition is not None and notify is not None:
            notify(transition)

    return on_transition


def _registry_from_settings() -> BreakerRegistry:
    from common.config import get_settings
    from common.redis.client import redis_for

    settings = get_settings()
    client = redis_for(settings)
    return BreakerRegistry(client, settings.jenga_namespace, policy_from_settings(settings),
                           on_transition=alarm_hook(client, settings.jenga_namespace, _notify_installed),
                           on_fallback=_report_fallback).start()


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


# --- drop-in for the ``circuitbreaker`` package ---------------------------------



class SharedCircuitBreakerError(CircuitBreakerError):
    """Raised instead of calling a service whose shared breaker is open."""

    def __init__(self, circuit_breaker: SharedCircuitBreaker, retry_in: float):
        super().__init__(circuit_breaker)
        self.retry_in = retry_in

    def __str__(self) -> str:
        return f'Circuit "{self._circuit_breaker.name}" OPEN (shared; retry in {self.retry_in:.1f} s)'


class SharedCircuitBreaker(CircuitBreaker):
    """``@circuit(cls=SharedCircuitBreaker, name="slack")``: the ``circuitbreaker``
    API over a fleet-wide :class:`SharedBreaker`. ``failure_threshold`` and
    ``recovery_timeout`` override ``BREAKER_FAILURE_THRESHOLD`` and
    ``BREAKER_OPEN_SECONDS``; ``REGISTRY`` (class attribute) overrides the
    process's :func:`default_registry`."""

    REGISTRY: BreakerRegistry | None = None

    def __init__(self, failure_threshold=None, recovery_timeout=None, expected_exception=None, name=None,
                 fallback_function=None):
        super().__init__(failure_threshold, recovery_timeout, expected_exception, name, fallback_function)
        self._overrides = {k: v for k, v in (("failure_threshold", failure_threshold),
                                             ("open_seconds", recovery_timeout)) if v is not None}
        self._shared: SharedBreaker | None = None

    @property
    def shared(self) -> SharedBreaker:
        if self._shared is None:
            registry = self.REGISTRY or default_registry()
            policy = registry.policy_for(str(self))
            if self._overrides:
                open_max = max(policy.open_max_seconds, self._overrides.get("open_seconds", 0))
                policy = replace(policy, open_max_seconds=open_max, **self._overrides)
            self._shared = registry.breaker(str(self), policy)
        return self._shared

    def decorate(self, function):
        if self._name is None:
            self._name = getattr(function, "__qualname__", function.__name__)
        CircuitBreakerMonitor.register(self)
        import functools

        if iscoroutinefunction(function):
            @functools.wraps(function)
            async def awrapper(*args, **kwargs):
                with self._guarded() as fallback:
                    if fallback is not None:
                        return await fallback(*args, **kwargs)
                    return await function(*args, **kwargs)
            return awrapper

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self._guarded() as fallback:
                if fallback is not None:
                    return fallback(*args, **kwargs)
                return function(*args, **kwargs)
        return wrapper

    def call(self, func, *args, **kwargs):
        with self._guarded() as fallback:
            return (fallback or func)(*args, **kwargs)

    def _guarded(self):
        return _Guarded(self)

    def __enter__(self):
        self._admission = self._admit_or_raise()
        self._started = time.perf_counter()

    def __exit__(self, exc_type, exc_value, _traceback):
        self._finish(getattr(self, "_admission", bp.ADMITTED), exc_type, exc_value, self._started)
        return False

    def _admit_or_raise(self) -> bp.Admission:
        admission = self.shared.admit()
        if not admission.allowed:
            raise SharedCircuitBreakerError(self, admission.retry_in)
        return admission

    def _finish(self, admission: bp.Admission, exc_type, exc_value, started: float) -> None:
        failed = bool(exc_type) and self.is_failure(exc_type, exc_value)
        if failed:
            self._last_failure = exc_value
        self.shared.record(failed, time.perf_counter() - started, admission)

    # --- the circuitbreaker reporting API, answered from the shared state --------
    @property
    def state(self):
        return self.shared.state

    @property
    def open_remaining(self):
        remaining = self.shared.snapshot()["open_remaining_seconds"]
        return math.ceil(remaining) if remaining else 0

    @property
    def failure_count(self):
        return self.shared._known.consecutive

    @property
    def last_failure(self):
        return self._last_failure


class _Guarded:
    """One call through a :class:`SharedCircuitBreaker`: admit, run, record.
    Yields the fallback function to call instead when the breaker refuses and one is set."""

    def __init__(self, breaker: SharedCircuitBreaker):
        self.breaker = breaker

    def __enter__(self):
        admission = self.breaker.shared.admit()
        if not admission.allowed:
            if self.breaker.fallback_function:
                self.admission = None
                return self.breaker.fallback_function
            raise SharedCircuitBreakerError(self.breaker, admission.retry_in)
        self.admission = admission
        self.started = time.perf_counter()
        return None

    def __exit__(self, exc_type, exc_value, _traceback):
        if self.admission is not None:
            self.breaker._finish(self.admission, exc_type, exc_value, self.started)
        return False
