"""Level 4: the Redis side of the fleet-wide concurrency limits.

:class:`LimitStore` runs ``aimd.lua`` (one sync of a process with its service's
limit: leases renewed, granted or taken back, samples counted, the AIMD rule of
``aimd.py`` applied when the window closed) and decodes its reply into a
:class:`SyncReply` at the edge. It also reads a limit for people
(:meth:`LimitStore.read`, :func:`list_limits`: ``GET /breakers``, ``jenga breakers``).
Every key comes from :class:`~common.redis.keys.RedisKeys`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from common.guards.limit.aimd import AIMDOptions
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

__all__ = ["LimitChange", "LimitStore", "SyncReply", "list_limits"]

# aimd.py's rule, applied atomically; KEYS, ARGV and the reply are described in the file.
_SYNC_LUA = read_lua("common.guards.limit", "aimd.lua")


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
    """The limits of one namespace in Redis; every method is one round trip."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.keys = RedisKeys(namespace)
        self._script = client.register_script(_SYNC_LUA)

    def script_keys(self, service: str) -> list[str]:
        """``aimd.lua``'s KEYS, in its order."""
        keys = self.keys
        return [
            keys.limit(service),
            keys.limit_leases(service),
            keys.limit_peaks(service),
            keys.limits(),
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
        """One sync of ``process_id``'s slots and samples (see ``aimd.lua``)."""
        args: list[Any] = [
            repr(float(now)),
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
            *busy,
            *free,
        ]
        return SyncReply.decode(self._script(keys=self.script_keys(service), args=args))

    def give_back(self, service: str, slots: Sequence[str]) -> None:
        """Return idle slots to the fleet at once (they would expire after the TTL anyway)."""
        if slots:
            self.client.zrem(self.keys.limit_leases(service), *slots)

    def services(self) -> list[str]:
        """Every service of this namespace that has a limit, sorted."""
        return sorted(_text(s) for s in self.client.smembers(self.keys.limits()))

    def read(self, service: str, now: float) -> dict[str, Any] | None:
        """One limit as the fleet sees it (``None``: never used), for people."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.limit(service))
        pipe.zcount(self.keys.limit_leases(service), f"({now}", "+inf")
        pipe.hvals(self.keys.limit_peaks(service))
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


def list_limits(
    redis_client: redis.Redis, namespace: str, now: float | None = None
) -> list[dict[str, Any]]:
    """Every limit of this namespace as the fleet sees it (for ``GET /breakers``
    and ``jenga breakers``), sorted by service. Raises ``redis.RedisError`` when
    Redis is unreachable."""
    now = time.time() if now is None else now
    store = LimitStore(redis_client, namespace)
    views = []
    for service in store.services():
        view = store.read(service, now)
        if view is not None:
            views.append(view)
    return views
