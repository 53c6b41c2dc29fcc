"""Level 4: the Redis side of the fleet-wide concurrency limits.

:class:`LimitStore` runs ``aimd.lua`` (one sync of a process with its service's
limit: leases renewed, granted or taken back, samples counted, the AIMD rule of
``aimd.py`` applied when the window closed) and decodes its reply into a
:class:`SyncReply` at the edge. It also reads a limit for people
(:meth:`LimitStore.read`, :func:`list_limits`: ``GET /breakers``, ``jenga breakers``).
Every key comes from :class:`~common.redis.keys.RedisKeys`.

**Windows are fleet-wide.** Samples are added to per-service counters in Redis;
the first sync after the window's end applies the AIMD rule in Lua (``aimd.lua``, the
same arithmetic as :func:`common.guards.limit.aimd.update`; a test checks they agree) and resets
the counters, so the rule runs once per window whoever closes it, and that
process logs ``limit.changed``. The window's peak in flight is the sum of each
process's own peak: an upper bound of the true fleet peak (exact for one
process), which can only make growth a little eager; drops correct it.

One clock: a sync runs on Redis's (``TIME``), whatever each worker's says, so that
the fleet agrees on when a lease lapsed. A service's keys expire when it has been
idle for :func:`key_ttl`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from common.guards.limit.aimd import AIMDOptions
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua, redis_time

__all__ = ["IDLE_TTL_SECONDS", "LimitChange", "LimitStore", "SyncReply", "key_ttl", "list_limits"]

# aimd.py's rule, applied atomically; KEYS, ARGV and the reply are described in the file.
_SYNC_LUA = read_lua("common.guards.limit", "aimd.lua")

# An idle service's limit keys live at least this long (s) after its last sync.
IDLE_TTL_SECONDS = 3600.0


def key_ttl(options: AIMDOptions, lease_ttl: float, idle_ttl: float = IDLE_TTL_SECONDS) -> float:
    """How long (s) a service's limit keys outlive its last sync: ``idle_ttl``, or ten
    times the longest period its state matters for (the window, a lease) if that is
    longer, so held leases never vanish: their holder renews them every lease TTL."""
    return max(idle_ttl, 10 * max(options.window, lease_ttl))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class LimitChange:
    """The limit moved when this sync closed the window (``reason``: drop, latency, load)."""

    old: int
    new: int
    reason: str


@dataclass(frozen=True)
class SyncReply:
    """What ``aimd.lua`` answers: the limit now, the change if this sync closed the
    window and moved it, this process's slots (``lost``: busy ones no longer leased;
    ``kept`` and ``granted``: idle ones now held) and the slots held fleet-wide."""

    limit: int
    change: LimitChange | None
    lost: tuple[str, ...]
    kept: tuple[str, ...]
    granted: tuple[str, ...]
    held: int

    @classmethod
    def decode(cls, reply: Sequence[Any]) -> SyncReply:
        limit, changed, lost, kept, granted, held = reply
        change = None
        if changed:
            change = LimitChange(int(changed[0]), int(changed[1]), _text(changed[2]))
        return cls(
            int(limit),
            change,
            tuple(map(_text, lost)),
            tuple(map(_text, kept)),
            tuple(map(_text, granted)),
            int(held),
        )


class LimitStore:
    """The limits of one namespace in Redis; every method is one round trip.

    A sync runs on Redis's clock, so that workers whose clocks disagree agree on when
    a lease lapsed or a window closed; ``caller_clock=True`` runs it on the callers'
    ``now`` instead (tests that control time). ``idle_ttl``: the shortest life of an
    idle service's keys (:func:`key_ttl`)."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        caller_clock: bool = False,
        idle_ttl: float = IDLE_TTL_SECONDS,
    ):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.caller_clock = caller_clock
        self.idle_ttl = idle_ttl
        self._script = client.register_script(_SYNC_LUA)

    def script_keys(self, service: str) -> list[str]:
        """``aimd.lua``'s KEYS, in its order."""
        keys = self.keys
        return [
            keys.limit(service),
            keys.limit_leases(service),
            keys.limit_peaks(service),
            keys.limit_index(),
        ]

    def sync(
        self,
        service: str,
        options: AIMDOptions,
        *,
        now: float,
        lease_ttl: float,
        process_id: str,
        want: int,
        seq: int,
        count: int,
        drops: int,
        latency_us: int,
        peak: int,
        busy: Sequence[str],
        free: Sequence[str],
    ) -> SyncReply:
        """One sync of ``process_id``'s slots and samples (see ``aimd.lua``); ``now``
        is the caller's clock, used only by a ``caller_clock`` store."""
        args: list[Any] = [
            repr(float(now)) if self.caller_clock else "",
            repr(float(lease_ttl)),
            process_id,
            want,
            seq,
            count,
            drops,
            latency_us,
            peak,
            options.initial,
            options.min,
            options.max,
            repr(float(options.backoff_ratio)),
            options.step,
            repr(float(options.latency_target)),
            repr(float(options.window)),
            service,
            len(busy),
            math.ceil(key_ttl(options, lease_ttl, self.idle_ttl) * 1000),
            *busy,
            *free,
        ]
        return SyncReply.decode(self._script(keys=self.script_keys(service), args=args))

    def give_back(self, service: str, slots: Sequence[str]) -> None:
        """Return idle slots to the fleet at once (they would expire after the TTL anyway)."""
        if slots:
            self.client.zrem(self.keys.limit_leases(service), *slots)

    def services(self) -> list[str]:
        """Every service of this namespace whose limit keys still exist, sorted."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(self.keys.limit_index(), 0, -1, withscores=True)
        pipe.time()
        indexed, clock = pipe.execute()
        redis_now = redis_time(clock)
        return sorted(_text(s) for s, expires in indexed if expires > redis_now)

    def read(self, service: str, now: float | None = None) -> dict[str, Any] | None:
        """One limit as the fleet sees it (``None``: never used or long idle), for
        people; leases are judged on Redis's clock (on ``now`` if the store runs on
        the caller's)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.limit(service))
        pipe.zrange(self.keys.limit_leases(service), 0, -1, withscores=True)
        pipe.hvals(self.keys.limit_peaks(service))
        pipe.time()
        raw, leases, peaks, clock = pipe.execute()
        if not raw:
            return None
        if not (self.caller_clock and now is not None):
            now = redis_time(clock)
        in_flight = sum(1 for _, expires in leases if expires > now)
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


def list_limits(
    redis_client: redis.Redis, namespace: str, now: float | None = None
) -> list[dict[str, Any]]:
    """Every limit of this namespace as the fleet sees it (for ``GET /breakers``
    and ``jenga breakers``), sorted by service; leases are judged on Redis's clock
    (on ``now`` if given: tests). Raises ``redis.RedisError`` when Redis is unreachable."""
    store = LimitStore(redis_client, namespace, caller_clock=now is not None)
    views = []
    for service in store.services():
        view = store.read(service, now)
        if view is not None:
            views.append(view)
    return views
