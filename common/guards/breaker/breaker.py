"""Level 4: one external service's circuit breaker, as seen by one process.

Hot path: ``admit()`` on a closed breaker reads a cached state and makes no
Redis round trip; ``record()`` of a success appends to an in-process buffer that
the registry flushes in batches, while a failure is recorded at once (with the
buffer before it) and the state it answers is adopted at once. The first call
of each refresh period tells the registry the breaker is in use (``touch``), and
the first success of each flush period that it has outcomes to send
(``mark_pending``): the registry's loops visit those breakers only. Only calls
that need the fleet's consent (half-open trial calls, the first call after the
open time) run a Lua step. While Redis is
unreachable the same rules run on a per-process copy of the last known state.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import redis

from common.guards.breaker import policy as bp
from common.guards.breaker.store import BreakerStore, StepReply

__all__ = ["BreakerHost", "SharedBreaker"]

# Cached in place of "closed" while the fleet counts consecutive failures toward the
# threshold: the hot path's one comparison with CLOSED sends such calls to Redis.
_COUNTING = "closed_counting"


class BreakerHost(Protocol):
    """What a breaker needs from the registry that holds it."""

    store: BreakerStore
    fallback: bool  # True while Redis is unreachable: breakers run per process
    refusal_hold: float
    clock: Callable[[], float]
    rand: Callable[[], float]

    def wake(self) -> None: ...

    def touch(self, breaker: SharedBreaker) -> None: ...

    def mark_pending(self, breaker: SharedBreaker) -> None: ...

    def enter_fallback(self, error: BaseException) -> None: ...

    def transitioned(
        self, name: str, change: bp.Change, state: bp.BreakerState, local_only: bool = False
    ) -> None: ...


class SharedBreaker:
    """One external service's breaker, as seen by this process."""

    def __init__(self, registry: BreakerHost, name: str, policy: bp.BreakerPolicy):
        self.registry = registry
        self.name = name
        self.policy = policy
        # Cached shared state: replaced whole (one attribute store), so the hot
        # path reads a consistent triple without a lock.
        self._cached: tuple[str, float, bool] = (bp.CLOSED, 0.0, False)
        self._known = bp.BreakerState()
        self._local: bp.BreakerState | None = None  # per-process state while Redis is unreachable
        # (until, retry_at): after Redis said "every trial slot is taken", refuse locally until
        # ``until`` instead of a round trip per refused call (see BreakerRegistry.refusal_hold).
        self._hold: tuple[float, float] = (0.0, 0.0)
        self._lock = threading.Lock()
        self._pending = bp.Outcomes()
        self.last_failure: BaseException | None = None
        # Used since the registry's last refresh (reset by it); last_used is when it
        # was first used in that period (registry clock), for eviction.
        self.touched = False
        self.last_used = registry.clock()
        self.evicted = False  # dropped by the registry: a new call must ask it again

    # --- hot path -----------------------------------------------------------
    def admit(self) -> bp.Admission:
        """May a call go out now? Refusals carry ``retry_in``; a half-open
        admission carries a ``probe`` lease to pass back to :meth:`record`."""
        if not self.touched:
            self.touched = True
            self.registry.touch(self)
        state, open_until, forced = self._cached
        if state == bp.CLOSED and not self.registry.fallback:
            return bp.ADMITTED
        return self._admit_slow(state, open_until, forced)

    def record(
        self,
        failed: bool,
        latency: float | None = None,
        admission: bp.Admission = bp.ADMITTED,
        timed_out: bool = False,
    ) -> None:
        """The outcome of an admitted call; ``latency`` (s) marks it slow past
        ``slow_call_seconds``; a failure that ``timed_out`` weighs ``timeout_weight``."""
        slow = latency is not None and latency >= self.policy.slow_call_seconds
        if admission.probe is not None:
            self._record_probe(admission.probe, failed or slow)
            return
        weight = self.policy.timeout_weight if timed_out else 1
        if self.registry.fallback:
            self.record_locally(bp.Outcomes().plus(failed, slow, weight))
            return
        if failed or self._cached[0] == _COUNTING:
            self._record_now(failed, slow, weight)
            return
        with self._lock:
            first = not self._pending.calls
            self._pending = self._pending.plus(failed, slow, weight)
        if first:
            self.registry.mark_pending(self)

    def _record_now(self, failed: bool, slow: bool, weight: int) -> None:
        """A failure goes to Redis at once, with the outcomes buffered before it (their
        order decides the consecutive count): failures are rare and the call already
        failed, so one round trip costs little, while a buffered failure let every
        process call a dead service until the next flush (issue 17). The reply is
        adopted here: the process that tripped the breaker refuses from its next call.
        While the fleet counts failures, a success goes at once too: it ends the count."""
        with self._lock:
            batch, self._pending = self._pending.plus(failed, slow, weight), bp.Outcomes()
        try:
            reply = self.registry.store.step(
                self.name,
                self.policy,
                "record",
                self.registry.clock(),
                self.registry.rand(),
                batch=(batch.calls, batch.failures, batch.slow, batch.trailing_failures),
            )
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            self.record_locally(batch)
            return
        self.handle_reply(reply)

    # --- slow path ------------------------------------------------------------
    def _admit_slow(self, state: str, open_until: float, forced: bool) -> bp.Admission:
        now = self.registry.clock()
        if self.registry.fallback:
            return self._admit_local(now)
        if state == _COUNTING:
            return self._admit_counting(now)
        if state == bp.OPEN and (forced or now < open_until):
            # Still open by the cached state: refuse without asking Redis.
            return bp.Admission(
                False, retry_in=self.policy.open_seconds if forced else open_until - now
            )
        until, retry_at = self._hold
        if now < until:
            return bp.Admission(False, retry_in=max(0.0, retry_at - now))
        try:
            reply = self.registry.store.step(
                self.name, self.policy, "admit", now, arg=uuid.uuid4().hex
            )
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            return self._admit_local(now)
        self.apply_state(reply.state)
        if reply.allowed:
            return bp.Admission(True, probe=reply.probe)
        retry_in = max(0.0, reply.retry_in)
        if reply.state.state == bp.HALF_OPEN:
            # Only an expiring lease (at retry_in at the earliest) or a published
            # transition (which clears the hold) can free a slot: asking again at
            # once would be a round trip per refused call.
            self._hold = (now + min(self.registry.refusal_hold, retry_in), now + retry_in)
        return bp.Admission(False, retry_in=retry_in)

    def _admit_counting(self, now: float) -> bp.Admission:
        """Closed, but the fleet has consecutive failures: ask Redis, as another
        process's failure may have tripped it a moment ago (the pub/sub message would
        come after this call went out). Costs a round trip per call only until a
        success (this process's or the fleet's) ends the count."""
        try:
            reply = self.registry.store.step(
                self.name, self.policy, "admit", now, arg=uuid.uuid4().hex
            )
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            return self._admit_local(now)
        self.apply_state(reply.state)
        if reply.allowed:
            return bp.Admission(True, probe=reply.probe)
        return bp.Admission(False, retry_in=max(0.0, reply.retry_in))

    def _record_probe(self, lease: str, failed: bool) -> None:
        now = self.registry.clock()
        if self.registry.fallback:
            self._record_local_probe(lease, failed, now)
            return
        try:
            reply = self.registry.store.step(
                self.name,
                self.policy,
                "probe",
                now,
                self.registry.rand(),
                lease,
                (1, int(failed), 0, int(failed)),
            )
        except redis.RedisError as error:
            self.registry.enter_fallback(error)
            self._record_local_probe(lease, failed, now)
            return
        self.handle_reply(reply)

    # --- called by the registry ------------------------------------------------
    def take_pending(self) -> bp.Outcomes:
        """The outcomes buffered since the last flush (the buffer is emptied)."""
        with self._lock:
            pending, self._pending = self._pending, bp.Outcomes()
        return pending

    @property
    def has_pending(self) -> bool:
        """True while outcomes wait for the next flush."""
        return bool(self._pending.calls)

    def handle_reply(self, reply: StepReply) -> None:
        """Adopt what a Lua step answered; report its transition, made by this process."""
        self.apply_state(reply.state)
        if reply.change is not None:
            self.registry.transitioned(self.name, reply.change, reply.state)

    def apply_state(self, state: bp.BreakerState) -> None:
        """Adopt the shared state (read from Redis or answered by a step)."""
        self._known = state
        counting = state.state == bp.CLOSED and state.consecutive and self.policy.failure_threshold
        self._cached = (_COUNTING if counting else state.state, state.open_until, state.forced)
        self._hold = (0.0, 0.0)

    def apply_event(self, state: str, open_until: float, forced: bool) -> None:
        """Adopt a transition published by another process."""
        # A transition starts a fresh count: closed after trial calls or by an operator.
        self._known = replace(
            self._known, state=state, open_until=open_until, forced=forced, consecutive=0
        )
        self._cached = (state, open_until, forced)
        self._hold = (0.0, 0.0)

    # --- per-process fallback -------------------------------------------------
    def start_local(self) -> None:
        """Redis is lost: go on from the last known state, with no window or leases."""
        with self._lock:
            self._local = replace(self._known, window=(), leases=())

    def _admit_local(self, now: float) -> bp.Admission:
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, admission = bp.admit(self.policy, local, now, uuid.uuid4().hex)
        return admission

    def record_locally(self, batch: bp.Outcomes) -> None:
        """Count ``batch`` in the per-process state (Redis unreachable)."""
        now = self.registry.clock()
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, change = bp.record(self.policy, local, batch, now, self.registry.rand())
        if change:
            self.registry.transitioned(self.name, change, self._local, local_only=True)

    def _record_local_probe(self, lease: str, failed: bool, now: float) -> None:
        with self._lock:
            local = self._local if self._local is not None else self._known
            self._local, change = bp.record_probe(
                self.policy, local, lease, failed, now, self.registry.rand()
            )
        if change:
            self.registry.transitioned(self.name, change, self._local, local_only=True)

    # --- reporting ------------------------------------------------------------
    @property
    def known(self) -> bp.BreakerState:
        """The last shared state this process learnt (not the per-process fallback's)."""
        return self._known

    @property
    def state(self) -> str:
        """closed, open or half_open, as this process sees it now."""
        known = self._local if self.registry.fallback and self._local is not None else self._known
        return bp.settle(self.policy, known, self.registry.clock()).state

    def snapshot(self) -> dict[str, Any]:
        known = self._local if self.registry.fallback and self._local is not None else self._known
        now = self.registry.clock()
        settled = bp.settle(self.policy, known, now)
        counting_down = settled.state == bp.OPEN and not settled.forced
        return {
            "name": self.name,
            "state": settled.state,
            "fallback": self.registry.fallback,
            "forced": settled.forced,
            "trips": settled.trips,
            "consecutive_failures": settled.consecutive,
            "open_remaining_seconds": max(0.0, settled.open_until - now) if counting_down else None,
        }
