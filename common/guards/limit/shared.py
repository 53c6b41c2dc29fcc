"""One adaptive (AIMD) concurrency limit per external service, shared by the
whole fleet through Redis.

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
``refusal_hold`` (10 ms) instead of asking again on every attempt. A background thread syncs every
``sync_interval`` (default 0.1 s, at most a quarter of the window and of the
TTL): it renews the leases, flushes the samples (count, drops, latency, peak in
flight) into the window counters, learns the current limit, and returns the
idle slots beyond what the process used since the previous sync.
*The trade-off:* a slot idle in one process is not available to another for up
to one sync interval, so under contention a process can be refused while the
fleet is, for a moment, below the limit; and samples reach the window up to one
sync interval late. Both are bounded by ``sync_interval``; exclusivity is not
traded: held slots (busy or idle) never exceed the limit.

**Windows are fleet-wide.** Samples are added to per-service counters in Redis;
the first sync after the window's end applies the AIMD rule in Lua (the same
arithmetic as :func:`common.guards.limit.aimd.update`; a test checks they agree) and resets
the counters, so the rule runs once per window whoever closes it, and that
process logs ``limit.changed``. The window's peak in flight is the sum of each
process's own peak: an upper bound of the true fleet peak (exact for one
process), which can only make growth a little eager; drops correct it.
Clocks of the fleet's hosts are assumed to agree within a fraction of the
window (NTP), because ``now`` comes from the caller's ``clock``.

**Redis unreachable.** The process falls back to a conservative local limit of
``options.min`` calls in flight (``LIMIT_MIN``), says so in :meth:`snapshot`
(``"fallback": true``) and in the log (``limit.fallback``), and retries Redis
after a full-jitter backoff, never on every call.

Redis keys (``{ns}`` is the namespace): ``{ns}:limits`` (set of services),
``{ns}:limit:{service}`` (hash: limit and window counters),
``{ns}:limit:{service}:leases`` (sorted set: slot id -> expiry),
``{ns}:limit:{service}:peaks`` (hash: process id -> peak in flight this window).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import redis

from common.connections.probes import describe_error
from common.guards.limit.aimd import AIMDOptions, initial
from common.redis.keys import RedisKeys
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event

log = logging.getLogger("jenga.limit")

# Service names become part of Redis keys: any visible characters (hosts, IPv6,
# `webhook:host`), no spaces, no braces (Redis Cluster hash tags).
SERVICE_RE = re.compile(r"[^\s{}]{1,200}")

# KEYS: state hash, leases zset, peaks hash, registry set.
# ARGV: now, ttl, process id, want, next seq, count, drops, latency_us, peak,
#       initial, min, max, backoff_ratio, step, latency_target, window,
#       service, number of busy ids, busy ids..., free ids...
SYNC_LUA = """
local state, leases, peaks, registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local proc = ARGV[3]
local want = tonumber(ARGV[4])
local seq = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local drops = tonumber(ARGV[7])
local latency_us = tonumber(ARGV[8])
local peak = tonumber(ARGV[9])
local o_initial = tonumber(ARGV[10])
local o_min = tonumber(ARGV[11])
local o_max = tonumber(ARGV[12])
local o_ratio = tonumber(ARGV[13])
local o_step = tonumber(ARGV[14])
local o_target = tonumber(ARGV[15])
local o_window = tonumber(ARGV[16])
local service = ARGV[17]
local nbusy = tonumber(ARGV[18])

redis.call('SADD', registry, service)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)

local limit = tonumber(redis.call('HGET', state, 'limit'))
if not limit then
  limit = o_initial
  redis.call('HSET', state, 'limit', limit, 'window_start', tostring(now),
             'count', 0, 'drops', 0, 'latency_us', 0)
end
redis.call('HSET', state, 'min', o_min, 'max', o_max, 'window_seconds', tostring(o_window))

if count > 0 then
  redis.call('HINCRBY', state, 'count', count)
  redis.call('HINCRBY', state, 'drops', drops)
  redis.call('HINCRBY', state, 'latency_us', latency_us)
end
if peak > 0 then
  local old = tonumber(redis.call('HGET', peaks, proc)) or 0
  if peak > old then redis.call('HSET', peaks, proc, peak) end
end

-- Whoever syncs first after the window's end applies the rule, once.
local changed = {}
local window_start = tonumber(redis.call('HGET', state, 'window_start')) or now
if now >= window_start + o_window then
  local c = tonumber(redis.call('HGET', state, 'count')) or 0
  local d = tonumber(redis.call('HGET', state, 'drops')) or 0
  local lat = tonumber(redis.call('HGET', state, 'latency_us')) or 0
  local p = 0
  for _, v in ipairs(redis.call('HVALS', peaks)) do p = p + tonumber(v) end
  local avg = 0
  local reason = 'steady'
  if c > 0 then
    avg = (lat / c) / 1e6
    if d > 0 then reason = 'drop'
    elseif avg > o_target then reason = 'latency'
    elseif p * 2 >= limit then reason = 'load' end
  end
  local new = limit
  if reason == 'drop' or reason == 'latency' then new = math.floor(limit * o_ratio)
  elseif reason == 'load' then new = limit + o_step end
  new = math.min(o_max, math.max(o_min, new))
  redis.call('HSET', state, 'limit', new, 'window_start', tostring(now),
             'count', 0, 'drops', 0, 'latency_us', 0,
             'last_count', c, 'last_drops', d, 'last_peak', p,
             'last_avg_latency', tostring(avg), 'last_reason', reason,
             'last_closed_at', tostring(now))
  redis.call('DEL', peaks)
  if new ~= limit then
    changed = {limit, new, reason}
    redis.call('HSET', state, 'changed_at', tostring(now))
  end
  limit = new
end

local expiry = now + ttl
local lost = {}
local busy_valid = 0
for i = 19, 18 + nbusy do
  if redis.call('ZSCORE', leases, ARGV[i]) then
    redis.call('ZADD', leases, 'XX', expiry, ARGV[i])
    busy_valid = busy_valid + 1
  else
    lost[#lost + 1] = ARGV[i]
  end
end
local free_valid = {}
for i = 19 + nbusy, #ARGV do
  if redis.call('ZSCORE', leases, ARGV[i]) then free_valid[#free_valid + 1] = ARGV[i] end
end

local others = redis.call('ZCARD', leases) - busy_valid - #free_valid
local target = math.min(want, limit - others)
local keep = math.max(0, math.min(#free_valid, target - busy_valid))
local kept = {}
for i, id in ipairs(free_valid) do
  if i <= keep then
    redis.call('ZADD', leases, 'XX', expiry, id)
    kept[#kept + 1] = id
  else
    redis.call('ZREM', leases, id)
  end
end
local granted = {}
for j = 0, target - busy_valid - keep - 1 do
  local id = proc .. ':' .. (seq + j)
  redis.call('ZADD', leases, expiry, id)
  granted[#granted + 1] = id
end
return {limit, changed, lost, kept, granted, redis.call('ZCARD', leases)}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _keys(namespace: str, service: str) -> list[str]:
    keys = RedisKeys(namespace)
    return [
        keys.key("limit", service),
        keys.key("limit", service, "leases"),
        keys.key("limit", service, "peaks"),
        keys.key("limits"),
    ]


class Lease:
    """One call's slot. :meth:`release` records the call's outcome; a second
    release is ignored."""

    __slots__ = ("_limit", "slot", "fallback", "_released")

    def __init__(self, limit: SharedLimit, slot: str | None, fallback: bool = False):
        self._limit = limit
        self.slot = slot  # None: a local fallback slot (Redis unreachable)
        self.fallback = fallback
        self._released = False

    def release(self, dropped: bool = False, latency: float = 0.0) -> None:
        """Give the slot back; ``dropped`` marks a failure (error, timeout,
        429/503), ``latency`` is the call's duration in seconds."""
        self._limit._release(self, dropped, latency)

    @property
    def released(self) -> bool:
        return self._released


_instances: weakref.WeakSet[SharedLimit] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for instance in list(_instances):
        instance._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
    ):
        if not SERVICE_RE.fullmatch(service):
            raise ValueError(
                f"service name {service!r} is not usable as a limit name: use 1-200 visible "
                "characters, no spaces and no braces"
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
        self.refusal_hold = min(0.01, self.sync_interval / 2) if refusal_hold is None else refusal_hold
        self.background = background
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._keys = _keys(namespace, service)
        self._script = redis_client.register_script(SYNC_LUA)
        self._init_local_state()
        _instances.add(self)

    @classmethod
    def from_settings(cls, redis_client: redis.Redis, settings: Any, service: str, **kwargs: Any) -> SharedLimit:
        """A limit tuned by the ``LIMIT_*`` settings, in ``JENGA_NAMESPACE``."""
        return cls(
            redis_client,
            settings.jenga_namespace,
            service,
            AIMDOptions.from_settings(settings),
            lease_ttl=settings.limit_lease_ttl_seconds,
            retry_base=settings.reconnect_base_seconds,
            retry_cap=settings.reconnect_cap_seconds,
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
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.syncs = 0  # successful round trips, for metrics and tests

    def _reset_after_fork(self) -> None:
        # The parent's slots and thread stay the parent's; the child starts empty
        # (a fresh lock, since another thread may have held it at fork time).
        self._init_local_state()

    # --- hot path --------------------------------------------------------------
    def try_acquire(self) -> Lease | None:
        """A slot for one call, or ``None`` when the fleet is at the limit."""
        with self._lock:
            now = self.clock()
            # The local limit check matters after a decrease: idle slots stay in
            # the allotment until the next sync, but must not be used past it.
            if self._free and now < self._free_until and len(self._busy) + self._extra < self._limit:
                return self._take(self._free.pop())
            if self.background and self._thread is None:
                self._start_thread()
            if now < self._refused_until and not self._fallback:
                return None  # the fleet was full a moment ago: don't ask Redis on every call
            self._sync_locked(now, need=1)
            if self._free and len(self._busy) + self._extra < self._limit:
                return self._take(self._free.pop())
            if self._fallback and len(self._busy) + self._extra < self.options.min:
                self._extra += 1
                self._note_in_flight()
                return Lease(self, None, fallback=True)
            if not self._fallback:
                self._refused_until = now + self.refusal_hold
            return None

    def _take(self, slot: str) -> Lease:
        self._busy.add(slot)
        self._note_in_flight()
        return Lease(self, slot)

    def _note_in_flight(self) -> None:
        in_flight = len(self._busy) + self._extra
        if in_flight > self._peak:
            self._peak = in_flight

    def _release(self, lease: Lease, dropped: bool, latency: float) -> None:
        with self._lock:
            if lease._released:
                return
            lease._released = True
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
        """Renew leases, flush samples, learn the limit, return idle slots.
        The background thread calls this every ``sync_interval``."""
        with self._lock:
            self._sync_locked(self.clock(), need=0)

    def _sync_locked(self, now: float, need: int) -> None:
        if self._fallback and now < self._retry_at:
            return
        if need == 0 and not self._busy and not self._free and self._count == 0 and self._peak == 0:
            return  # idle: nothing to renew or report, no round trip
        busy = list(self._busy)
        free = list(self._free)
        want = max(self._peak, len(busy) + need)
        options = self.options
        args: list[Any] = [
            repr(float(now)), repr(float(self.lease_ttl)), self._process_id, want, self._seq,
            self._count, self._drops, self._latency_us, self._peak,
            options.initial, options.min, options.max, repr(float(options.backoff_ratio)),
            options.step, repr(float(options.latency_target)), repr(float(options.window)),
            self.service, len(busy), *busy, *free,
        ]
        try:
            limit, changed, lost, kept, granted, _held = self._script(keys=self._keys, args=args)
        except redis.RedisError as error:
            self._enter_fallback(now, error)
            return
        self.syncs += 1
        self._seq += len(granted)
        self._count = self._drops = self._latency_us = 0
        for slot in map(_text, lost):
            # Our lease expired (process frozen longer than the TTL, or Redis
            # lost it): the call goes on, but the slot is no longer ours.
            self._busy.discard(slot)
            self._extra += 1
        self._free = [*map(_text, kept), *map(_text, granted)]
        self._free_until = now + self.lease_ttl / 2
        self._refused_until = 0.0  # fresh news from the fleet: let the next acquire ask
        self._limit = int(limit)
        self._peak = len(self._busy) + self._extra
        if self._fallback:
            self._fallback = False
            self._failures = 0
            log_event(log, "limit.recovered", service=self.service, limit=self._limit)
        if changed:
            old, new, reason = int(changed[0]), int(changed[1]), _text(changed[2])
            log_event(log, "limit.changed", service=self.service, old=old, new=new, reason=reason)

    def _enter_fallback(self, now: float, error: Exception) -> None:
        if not self._fallback:
            log_event(
                log, "limit.fallback", logging.WARNING, service=self.service,
                local_limit=self.options.min, error=describe_error(error),
            )
        self._fallback = True
        # Idle slots may expire in Redis while we cannot renew them: forget them.
        self._free = []
        self._retry_at = now + full_jitter_backoff(self._failures, self.retry_base, self.retry_cap)
        self._failures += 1

    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"jenga-limit-{self.service}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.sync_interval):
            try:
                self.sync()
            except Exception as error:  # the thread must outlive any surprise
                log_event(log, "limit.sync_failed", logging.WARNING, service=self.service, error=describe_error(error))

    def close(self) -> None:
        """Stop the background sync and give idle slots back to the fleet."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            if self._free and not self._fallback:
                try:
                    self.redis.zrem(self._keys[1], *self._free)
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
            local = {"held": len(self._busy) + len(self._free), "busy": len(self._busy) + self._extra}
            fallback = self._fallback
        if not fallback:
            try:
                view = _read_limit(self.redis, self.namespace, self.service, self.clock())
            except redis.RedisError:
                fallback = True
            else:
                if view is not None:
                    view.update(fallback=False, local=local)
                    return view
                return {
                    "service": self.service, "limit": initial(self.options), "in_flight": 0,
                    "min": self.options.min, "max": self.options.max,
                    "window": {"seconds": self.options.window, "count": 0, "drops": 0},
                    "fallback": False, "local": local,
                }
        return {
            "service": self.service, "limit": self.options.min, "in_flight": local["busy"],
            "min": self.options.min, "max": self.options.max,
            "window": {"seconds": self.options.window}, "fallback": True, "local": local,
        }


def _read_limit(client: redis.Redis, namespace: str, service: str, now: float) -> dict[str, Any] | None:
    state_key, leases_key, peaks_key, _ = _keys(namespace, service)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(state_key)
    pipe.zcount(leases_key, f"({now}", "+inf")
    pipe.hvals(peaks_key)
    raw, in_flight, peaks = pipe.execute()
    if not raw:
        return None
    state = {_text(k): _text(v) for k, v in raw.items()}

    def num(name: str, kind: Callable[[str], Any] = int, default: Any = 0) -> Any:
        try:
            return kind(state[name])
        except (KeyError, ValueError):
            return default

    count = num("count")
    window: dict[str, Any] = {
        "seconds": num("window_seconds", float, None),
        "started_at": num("window_start", float, None),
        "count": count,
        "drops": num("drops"),
        "avg_latency": (num("latency_us") / count) / 1e6 if count else 0.0,
        "max_in_flight": sum(int(_text(p)) for p in peaks),
    }
    if "last_reason" in state:
        window["last"] = {
            "count": num("last_count"),
            "drops": num("last_drops"),
            "max_in_flight": num("last_peak"),
            "avg_latency": num("last_avg_latency", float, 0.0),
            "reason": state["last_reason"],
            "closed_at": num("last_closed_at", float, None),
        }
    return {
        "service": service,
        "limit": num("limit"),
        "in_flight": int(in_flight),
        "min": num("min", int, None),
        "max": num("max", int, None),
        "window": window,
        "changed_at": num("changed_at", float, None),
    }


def list_limits(redis_client: redis.Redis, namespace: str, now: float | None = None) -> list[dict[str, Any]]:
    """Every limit of this namespace as the fleet sees it (for ``GET /breakers``
    and ``jenga breakers``), sorted by service. Raises ``redis.RedisError`` when
    Redis is unreachable."""
    now = time.time() if now is None else now
    services = sorted(_text(s) for s in redis_client.smembers(RedisKeys(namespace).key("limits")))
    views = []
    for service in services:
        view = _read_limit(redis_client, namespace, service, now)
        if view is not None:
            views.append(view)
    return views
