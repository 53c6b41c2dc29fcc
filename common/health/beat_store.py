"""Level 2: the beat lease and the active beat's heartbeat in Redis.

One hash per namespace (``RedisKeys.beat``), written only by ``beat_lock.lua``
(:mod:`common.health.beat_lock`'s rule, applied atomically on Redis's clock).
Beats :meth:`~BeatStore.claim`, :meth:`~BeatStore.release` and
:meth:`~BeatStore.record` (fenced: only the holder with its token writes);
watchers and the command line :meth:`~BeatStore.read` it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua, redis_time

__all__ = ["BeatRecord", "BeatStore", "LeaseReply", "WATCHDOGS_FIELD"]

_LEASE_LUA = read_lua("common.health", "beat_lock.lua")

# The hash outlives its last write by this much: a namespace nobody runs any more
# leaves nothing behind, and a week without a beat is an alarm long since raised.
KEY_TTL_SECONDS = 7 * 24 * 3600
WATCHDOGS_FIELD = "watchdogs_at"
RAN_PREFIX = "ran:"


@dataclass(frozen=True)
class LeaseReply:
    """What ``beat_lock.lua`` answers: whether the step was granted, the lease after
    it, and Redis's time of the step."""

    granted: bool
    holder: str
    token: int
    expires_at: float
    now: float

    @classmethod
    def decode(cls, reply: Any) -> LeaseReply:
        granted, holder, token, expires_at, now = reply
        return cls(bool(int(granted)), holder or "", int(token), float(expires_at), float(now))


def _float(raw: dict[str, str], name: str) -> float | None:
    try:
        return float(raw[name])
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class BeatRecord:
    """The hash as read, with Redis's time of the read (``now``)."""

    now: float
    holder: str = ""
    token: int = 0
    expires_at: float = 0.0
    acquired_at: float | None = None
    tick_at: float | None = None
    watchdogs_at: float | None = None
    runs: dict[str, float] = field(default_factory=dict)  # entry name -> last sent

    @property
    def active(self) -> str:
        """The holder of a lease that has not expired, else ''."""
        return self.holder if self.holder and self.now < self.expires_at else ""

    @classmethod
    def decode(cls, raw: dict[str, str], now: float) -> BeatRecord:
        runs = {
            name[len(RAN_PREFIX) :]: float(value)
            for name, value in raw.items()
            if name.startswith(RAN_PREFIX)
        }
        return cls(
            now=now,
            holder=raw.get("holder", ""),
            token=int(raw.get("token") or 0),
            expires_at=_float(raw, "expires_at") or 0.0,
            acquired_at=_float(raw, "acquired_at"),
            tick_at=_float(raw, "tick_at"),
            watchdogs_at=_float(raw, WATCHDOGS_FIELD),
            runs=runs,
        )

    def to_dict(self) -> dict[str, Any]:
        """For ``jenga beat health --fleet --json`` and the status page: ages, not stamps."""

        def age(at: float | None) -> float | None:
            return None if at is None else round(self.now - at, 3)

        return {
            "active": self.active or None,
            "token": self.token,
            "lease_expires_in_seconds": round(self.expires_at - self.now, 3)
            if self.active
            else None,
            "last_tick_seconds_ago": age(self.tick_at),
            "watchdogs_seconds_ago": age(self.watchdogs_at),
            "runs_seconds_ago": {name: age(at) for name, at in sorted(self.runs.items())},
        }


class BeatStore:
    """Every method is one round trip; ``clock`` (unix time) is for tests, by default
    Redis's."""

    def __init__(self, redis_client: redis.Redis, namespace: str, clock=None):
        self.redis = redis_client
        self.key = RedisKeys(namespace).beat()
        self.clock = clock
        self._script = redis_client.register_script(_LEASE_LUA)

    def _run(
        self, mode: str, holder: str, token: int, ttl: float = 0.0, fields: Iterable[str] = ()
    ) -> LeaseReply:
        now = "" if self.clock is None else repr(float(self.clock()))
        args = [mode, holder, token, repr(float(ttl)), now, KEY_TTL_SECONDS, *fields]
        return LeaseReply.decode(self._script(keys=[self.key], args=args))

    def claim(self, holder: str, token: int, ttl: float) -> LeaseReply:
        """Take the lease if it is free or expired, renew it if ours (``token``, 0 for none)."""
        return self._run("claim", holder, token, ttl)

    def release(self, holder: str, token: int) -> LeaseReply:
        return self._run("release", holder, token)

    def record(self, holder: str, token: int, entries: Iterable[str], watchdogs: bool) -> bool:
        """Stamp ``entries`` (and, with ``watchdogs``, the watchdogs' last run) as sent
        now; False, writing nothing, unless ``(holder, token)`` holds the lease."""
        fields = [RAN_PREFIX + name for name in entries]
        if watchdogs:
            fields.append(WATCHDOGS_FIELD)
        return self._run("record", holder, token, fields=fields).granted

    def read(self) -> BeatRecord | None:
        """The hash and Redis's time; None if no beat ever wrote it (or it expired)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.key)
        pipe.time()
        raw, clock = pipe.execute()
        if not raw:
            return None
        now = float(self.clock()) if self.clock is not None else redis_time(clock)
        return BeatRecord.decode(raw, now)
