"""Level 4: one adaptive (AIMD) concurrency limit per external service, shared by
the whole fleet through Redis.

The rule lives in :mod:`common.guards.limit.aimd`; this module is the shell that counts
calls in flight across every worker process and applies the rule once per
window. Use::

    limit = SharedLimit(redis_client, namespace, "hooks.example.com")
    lease = limit.try_acquire()          # None: the fleet is at the limit
    if lease is not None:
        try: ...call the service...
        finally: lease.release(dropped=failed, latency=seconds)

**Slots are leases.** Every slot a process holds is a member of a Redis sorted
set scored by its expiry. A process renews its slots a few times per second; a
process that is SIGKILLed stops renewing, and its slots fall back to the fleet
after ``lease_ttl`` seconds (``LIMIT_LEASE_TTL_SECONDS``). Granting, renewing,
expiring and returning slots happen in one Lua script, so the number of slots
held fleet-wide never exceeds the limit (calls already in flight when the limit
drops finish; no new slot is granted until the fleet is under it again).

**Allotments keep the hot path local.** A Redis round trip costs 50-100 µs,
far above the ~10 µs budget of breaker + limiter per call. So a process does
not give a slot back to Redis when a call ends: it keeps it in a small local
*allotment* and the next ``try_acquire`` takes it from there (a lock, a clock
read and a list pop: ~1 µs, see BENCHMARKS.md "AIMD limit"). Redis is only
asked when the allotment is empty (the process wants more concurrency than it
holds), and after Redis answered "full" the process refuses locally for
``refusal_hold`` (10 ms) instead of asking again on every attempt. The process's one
sync loop (:mod:`common.guards.limit.registry`, a thread shared by every limit of
the process) syncs a limit in use every ``sync_interval`` (default 0.1 s, at most
a quarter of the window and of the TTL): it renews the leases, flushes the
samples (count, drops, latency, peak in flight) into the window counters, learns
the current limit, and returns the idle slots beyond what the process used since
the previous sync. A limit left with no slot and no sample leaves the loop until
it takes slots again, so idle limits cost no thread and no round trip.
*The trade-off:* a slot idle in one process is not available to another for up
to one sync interval, so under contention a process can be refused while the
fleet is, for a moment, below the limit; and samples reach the window up to one
sync interval late. Both are bounded by ``sync_interval``; exclusivity is not
traded: held slots (busy or idle) never exceed the limit.

**Windows are fleet-wide.** Samples go to per-service counters in Redis and the AIMD
rule runs once per window, in ``aimd.lua``, whoever closes it
(:mod:`common.guards.limit.store`).

**Redis unreachable.** The process falls back to a conservative local limit of
``options.min`` calls in flight (``LIMIT_MIN``), says so in :meth:`snapshot`
(``"fallback": true``) and in the log (``limit.fallback``), and retries Redis
after a full-jitter backoff, never on every call.

The Redis side (``aimd.lua``, its keys, reading a limit for people) is
:mod:`common.guards.limit.store`, the view without it :mod:`common.guards.limit.view`;
a call's slot is a :class:`~common.guards.limit.lease.Lease`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import redis

from common.connections.probes import describe_error
from common.guards.limit.aimd import AIMDOptions, initial
from common.guards.limit.lease import Lease
from common.guards.limit.registry import LimitRegistry, process_limits
from common.guards.limit.store import LimitStore
from common.guards.limit.view import fallback_view, never_used_view
from common.guards.names import SERVICE_NAME_RULE, is_service_name
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event

__all__ = ["SharedLimit"]

log = logging.getLogger("jenga.limit")


# Every live limit of this process, for the one fork hook below. A hook per limit
# would outlive it (os.register_at_fork cannot be undone): a closure left behind for
# every service the process ever called.
_live: weakref.WeakSet[SharedLimit] = weakref.WeakSet()


def _start_afresh_in_child() -> None:
    for limit in list(_live):
        limit._init_local_state()


os.register_at_fork(after_in_child=_start_afresh_in_child)


class SharedLimit:
    """The fleet-wide adaptive concurrency limit of one external service."""

    def __init__(
        self,
        redis_client: redis.Redis,
        namespace: str,
        service: str,
        options: AIMDOptions | None = None,
        clock: Callable[[], float] = time.time,
        *,
        lease_ttl: float = 10.0,
        sync_interval: float | None = None,
        background: bool = True,
        retry_base: float = 0.5,
        retry_cap: float = 5.0,
        refusal_hold: float | None = None,
        registry: LimitRegistry | None = None,
        idle_evict_seconds: float = 600.0,
    ):
        if not is_service_name(service):
            raise ValueError(
                f"service name {service!r} is not usable as a limit name: {SERVICE_NAME_RULE}"
            )
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be > 0 (LIMIT_LEASE_TTL_SECONDS)")
        self.redis = redis_client
        self.namespace = namespace
        self.service = service
        self.options = options or AIMDOptions()
        self.clock = clock
        self.lease_ttl = lease_ttl
        self.sync_interval = sync_interval or min(0.1, self.options.window / 4, lease_ttl / 4)
        # After Redis said "full", refuse locally for this long: a starved
        # process would otherwise make a round trip per attempt, holding the lock.
        self.refusal_hold = (
            min(0.01, self.sync_interval / 2) if refusal_hold is None else refusal_hold
        )
        self.background = background
        # The loop that syncs this limit in the background (the process's by default);
        # a registry that holds the limit drops it after idle_evict_seconds unused.
        self._registry = registry
        self.idle_evict_seconds = idle_evict_seconds
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.store = LimitStore(redis_client, namespace)
        self._init_local_state()
        # A forked child inherits this object with the parent's slots, its place in the
        # parent's sync loop (whose thread does not survive the fork) and a lock another
        # thread may have held: it starts empty. The module's fork hook finds it in a
        # weak set, so the limit can still be collected.
        # (Not a PerProcess: its pid check on every call would cost a quarter of the
        # hot path, see BENCHMARKS.md "AIMD limit".)
        _live.add(self)

    @classmethod
    def from_settings(
        cls, redis_client: redis.Redis, settings: Any, service: str, **kwargs: Any
    ) -> SharedLimit:
        """A limit tuned by the ``LIMIT_*`` settings, in ``JENGA_NAMESPACE``."""
        return cls(
            redis_client,
            settings.jenga_namespace,
            service,
            AIMDOptions.from_settings(settings),
            lease_ttl=settings.limit_lease_ttl_seconds,
            retry_base=settings.reconnect_base_seconds,
            retry_cap=settings.reconnect_cap_seconds,
            idle_evict_seconds=settings.guard_idle_evict_seconds,
            **kwargs,
        )

    def _init_local_state(self) -> None:
        self._lock = threading.Lock()
        self._process_id = uuid.uuid4().hex[:12]
        self._seq = 0
        self._free: list[str] = []  # slots held from Redis, idle
        # Idle slots are handed out only while surely unexpired in Redis, even
        # if the background sync stalled (half the TTL leaves room for skew).
        self._free_until = 0.0
        self._refused_until = 0.0
        self._busy: set[str] = set()  # slots held from Redis, in use
        self._extra = 0  # calls in flight without a Redis slot (fallback, lost lease)
        self._peak = 0  # most calls in flight at once since the last sync
        self._count = 0
        self._drops = 0
        self._latency_us = 0
        self._limit = initial(self.options)
        self._fallback = False
        self._failures = 0
        self._retry_at = 0.0
        self._in_loop = False  # in the sync loop's set (changed under the lock)
        self._last_used = self.clock()
        self.syncs = 0  # successful round trips, for metrics and tests

    # --- hot path --------------------------------------------------------------
    def try_acquire(self) -> Lease | None:
        """A slot for one call, or ``None`` when the fleet is at the limit."""
        with self._lock:
            now = self.clock()
            # The local limit check matters after a decrease: idle slots stay in
            # the allotment until the next sync, but must not be used past it.
            if (
                self._free
                and now < self._free_until
                and len(self._busy) + self._extra < self._limit
            ):
                self._last_used = now
                return self._take(self._free.pop())
            self._last_used = now
            if now < self._refused_until and not self._fallback:
                return None  # the fleet was full a moment ago: don't ask Redis on every call
            self._sync_locked(now, need=1)
            lease = None
            if self._free and len(self._busy) + self._extra < self._limit:
                lease = self._take(self._free.pop())
            elif self._fallback and len(self._busy) + self._extra < self.options.min:
                self._extra += 1
                self._note_in_flight()
                lease = Lease(self, None, fallback=True)
            elif not self._fallback:
                self._refused_until = now + self.refusal_hold
            # Join the loop only now that slots or samples are held: the loop forgets
            # a limit it found empty, and must not forget one that has just filled.
            if self.background and not self._in_loop and not self._empty_locked():
                self._in_loop = True
                (self._registry or process_limits()).activate(self)
            return lease

    def _take(self, slot: str) -> Lease:
        self._busy.add(slot)
        self._note_in_flight()
        return Lease(self, slot)

    def _note_in_flight(self) -> None:
        in_flight = len(self._busy) + self._extra
        if in_flight > self._peak:
            self._peak = in_flight

    def release(self, lease: Lease, dropped: bool, latency: float) -> None:
        """Take ``lease`` back (``Lease.release`` calls this) and count its outcome, once."""
        with self._lock:
            if not lease.mark_released():
                return
            self._last_used = self.clock()  # idle from the end of its last call
            self._count += 1
            self._drops += 1 if dropped else 0
            self._latency_us += max(0, int(round(latency * 1e6)))
            if lease.slot is not None and lease.slot in self._busy:
                self._busy.remove(lease.slot)
                if self._fallback:
                    # Redis is unreachable: the slot may expire there any time,
                    # so it must not be handed out again.
                    return
                self._free.append(lease.slot)
            else:
                self._extra = max(0, self._extra - 1)

    # --- sync with Redis ---------------------------------------------------------
    def sync(self) -> None:
        """Renew leases, flush samples, learn the limit, return idle slots."""
        with self._lock:
            self._sync_locked(self.clock(), need=0)

    def sync_in_background(self) -> bool:
        """:meth:`sync`, for the sync loop (every ``sync_interval``): False once the limit
        holds nothing (no slot, no sample), and the loop may forget it."""
        with self._lock:
            self._sync_locked(self.clock(), need=0)
            if self._empty_locked():
                self._in_loop = False
            return self._in_loop

    @property
    def in_use(self) -> bool:
        """True while the sync loop must keep syncing this limit."""
        return self._in_loop

    def evictable(self) -> bool:
        """True when a registry may drop this limit: unused for ``idle_evict_seconds``,
        holding no slot, owing Redis no sample, and not on its local fallback limit."""
        with self._lock:
            idle = self.clock() - self._last_used >= self.idle_evict_seconds
            return idle and not self._fallback and self._empty_locked()

    def _empty_locked(self) -> bool:
        return (
            not self._busy
            and not self._free
            and self._extra == 0
            and self._count == 0
            and self._peak == 0
        )

    def _sync_locked(self, now: float, need: int) -> None:
        if self._fallback and now < self._retry_at:
            return
        if need == 0 and self._empty_locked():
            return  # idle: nothing to renew or report, no round trip
        busy = list(self._busy)
        try:
            reply = self.store.sync(
                self.service,
                self.options,
                now=now,
                lease_ttl=self.lease_ttl,
                process_id=self._process_id,
                want=max(self._peak, len(busy) + need),
                seq=self._seq,
                count=self._count,
                drops=self._drops,
                latency_us=self._latency_us,
                peak=self._peak,
                busy=busy,
                free=list(self._free),
            )
        except redis.RedisError as error:
            self._enter_fallback(now, error)
            return
        self.syncs += 1
        self._seq += len(reply.granted)
        self._count = self._drops = self._latency_us = 0
        for slot in reply.lost:
            # Our lease expired (process frozen longer than the TTL, or Redis
            # lost it): the call goes on, but the slot is no longer ours.
            self._busy.discard(slot)
            self._extra += 1
        self._free = [*reply.kept, *reply.granted]
        self._free_until = now + self.lease_ttl / 2
        self._refused_until = 0.0  # fresh news from the fleet: let the next acquire ask
        self._limit = reply.limit
        self._peak = len(self._busy) + self._extra
        if self._fallback:
            self._fallback = False
            self._failures = 0
            log_event(log, "limit.recovered", service=self.service, limit=self._limit)
        if reply.change is not None:
            change = reply.change
            log_event(
                log,
                "limit.changed",
                service=self.service,
                old=change.old,
                new=change.new,
                reason=change.reason,
            )

    def _enter_fallback(self, now: float, error: Exception) -> None:
        if not self._fallback:
            log_event(
                log,
                "limit.fallback",
                logging.WARNING,
                service=self.service,
                local_limit=self.options.min,
                error=describe_error(error),
            )
        self._fallback = True
        # Idle slots may expire in Redis while we cannot renew them: forget them.
        self._free = []
        self._retry_at = now + full_jitter_backoff(self._failures, self.retry_base, self.retry_cap)
        self._failures += 1

    def close(self) -> None:
        """Leave the sync loop and give idle slots back to the fleet."""
        with self._lock:
            if self._in_loop:
                self._in_loop = False
                (self._registry or process_limits()).deactivate(self)
            if self._free and not self._fallback:
                try:
                    self.store.give_back(self.service, self._free)
                except redis.RedisError:
                    pass  # they expire after the TTL anyway
            self._free = []

    # --- reading -------------------------------------------------------------
    @property
    def fallback(self) -> bool:
        """True while Redis is unreachable and the local limit applies."""
        return self._fallback

    def snapshot(self) -> dict[str, Any]:
        """The limit as the fleet sees it, plus this process's share."""
        with self._lock:
            local = {
                "held": len(self._busy) + len(self._free),
                "busy": len(self._busy) + self._extra,
            }
            fallback = self._fallback
        if not fallback:
            try:
                view = self.store.read(self.service, self.clock())
            except redis.RedisError:
                fallback = True
            else:
                if view is not None:
                    view.update(fallback=False, local=local)
                    return view
                return never_used_view(self.service, self.options, local)
        return fallback_view(self.service, self.options, local)
