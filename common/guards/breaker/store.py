"""Level 4: the Redis side of the fleet-wide circuit breakers.

:class:`BreakerStore` runs ``policy.lua`` (one atomic step of one breaker: the
rules of ``policy.py``) and decodes its reply into a :class:`StepReply` at the
edge; it reads breakers for the registry (:meth:`BreakerStore.read_state`) and
for people (:meth:`BreakerStore.read`), and applies an operator's
open/close/reset (:meth:`BreakerStore.force`). Used by the registry, the API
and the CLI. Every key comes from :class:`~common.redis.keys.RedisKeys`.

One clock: the steps run on Redis's (``TIME``), whatever each worker's says; the
times a step or a read hands back are shifted onto the caller's clock, so that it
may compare them with its own readings. A breaker's keys expire when it has been
idle for :func:`key_ttl` (never while forced open).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from common.guards.breaker import policy as bp
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua, redis_time

__all__ = ["IDLE_TTL_SECONDS", "BreakerStore", "StepReply", "key_ttl", "state_from_hash"]

# policy.py's rules, applied atomically; KEYS, ARGV and the reply are described in the file.
_STEP_LUA = read_lua("common.guards.breaker", "policy.lua")
# ARGV 6..16 of policy.lua, in its order.
_POLICY_FIELDS = (
    "failure_threshold",
    "failure_rate",
    "min_calls",
    "window_seconds",
    "slow_call_rate",
    "open_seconds",
    "open_max_seconds",
    "half_open_calls",
    "lease_seconds",
    "jitter",
    "buckets",
)

Batch = tuple[int, int, int, int]  # calls, failures, slow, trailing failures

# An idle breaker's keys live at least this long (s) after its last step.
IDLE_TTL_SECONDS = 3600.0


def key_ttl(policy: bp.BreakerPolicy, idle_ttl: float = IDLE_TTL_SECONDS) -> float:
    """How long (s) a breaker's keys outlive its last step: ``idle_ttl``, or ten
    times the longest period its state matters for (open time, window, trial-call
    lease) if that is longer, so an open breaker never vanishes before its open time ends."""
    longest = max(
        policy.open_seconds, policy.open_max_seconds, policy.window_seconds, policy.lease_seconds
    )
    return max(idle_ttl, 10 * longest)


def _on_clock(state: bp.BreakerState, shift: float) -> bp.BreakerState:
    """``state`` with its open time moved by ``shift`` s (0 stays 0: never opened)."""
    if not shift or not state.open_until:
        return state
    return replace(state, open_until=state.open_until + shift)


@dataclass(frozen=True)
class StepReply:
    """What one ``policy.lua`` step answers: the breaker's state after it, the
    transition it made (if any), and for ``admit`` whether the call may go out
    (a half-open admission carries the ``probe`` lease) or when to ask again."""

    state: bp.BreakerState
    change: bp.Change | None
    allowed: bool
    probe: str | None
    retry_in: float

    @classmethod
    def decode(cls, reply: Sequence[str], caller_now: float | None = None) -> StepReply:
        """``caller_now``: the caller's clock when it asked; ``open_until`` is moved onto
        that clock from the one the step ran on (its last element)."""
        (
            state,
            open_until,
            trips,
            total_trips,
            consecutive,
            forced,
            changed,
            before,
            change_reason,
            allowed,
            probe,
            retry_in,
            probe_successes,
            reason,
            ran_at,
        ) = reply
        decoded = bp.BreakerState(
            state=state,
            open_until=float(open_until),
            trips=int(float(trips)),
            total_trips=int(float(total_trips)),
            consecutive=int(float(consecutive)),
            forced=forced == "1",
            probe_successes=int(float(probe_successes)),
            reason=reason,
        )
        change = bp.Change(before, state, change_reason) if changed == "1" else None
        shift = 0.0 if caller_now is None else caller_now - float(ran_at)
        return cls(
            _on_clock(decoded, shift), change, allowed == "1", probe or None, float(retry_in)
        )


def state_from_hash(raw: dict[str, str]) -> bp.BreakerState:
    """A breaker's stored state (``HGETALL`` of its key); empty means never used: closed."""
    if not raw:
        return bp.BreakerState()
    return bp.BreakerState(
        state=raw.get("state", bp.CLOSED),
        open_until=float(raw.get("open_until", 0)),
        trips=int(float(raw.get("trips", 0))),
        total_trips=int(float(raw.get("total_trips", 0))),
        consecutive=int(float(raw.get("consecutive", 0))),
        probe_successes=int(float(raw.get("probe_successes", 0))),
        forced=raw.get("forced", "0") in ("1", "1.0"),
        reason=raw.get("reason", ""),
    )


class BreakerStore:
    """The breakers of one namespace in Redis: one Lua step per call.

    Every ``now`` a caller passes is its own clock. The steps run on Redis's clock, so
    that workers whose clocks disagree agree on when an open time ends or a lease
    lapses, and the times they answer are moved onto the caller's clock;
    ``caller_clock=True`` runs them on the callers' ``now`` instead (tests that
    control time). ``idle_ttl``: the shortest life of an idle breaker's keys
    (:func:`key_ttl`)."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        caller_clock: bool = False,
        idle_ttl: float = IDLE_TTL_SECONDS,
    ):
        self.client = client
        self.namespace = namespace
        self.keys = RedisKeys(namespace)
        self.channel = self.keys.breaker_events()
        self.caller_clock = caller_clock
        self.idle_ttl = idle_ttl
        self._script = client.register_script(_STEP_LUA)

    def script_keys(self, name: str) -> list[str]:
        """``policy.lua``'s KEYS, in its order."""
        keys = self.keys
        return [
            keys.breaker(name),
            keys.breaker_window(name),
            keys.breaker_leases(name),
            keys.breaker_index(),
        ]

    def _run(
        self,
        name: str,
        policy: bp.BreakerPolicy,
        op: str,
        now: float | None,
        u: float,
        arg: str,
        batch: Batch,
        client: Any = None,
    ) -> Any:
        args = [
            op,
            name,
            repr(float(now)) if self.caller_clock and now is not None else "",
            repr(u),
            arg,
            *(repr(getattr(policy, f)) for f in _POLICY_FIELDS),
            *(str(n) for n in batch),
            self.channel,
            math.ceil(key_ttl(policy, self.idle_ttl) * 1000),
        ]
        return self._script(keys=self.script_keys(name), args=args, client=client)

    def step(
        self,
        name: str,
        policy: bp.BreakerPolicy,
        op: str,
        now: float | None = None,
        u: float = 0.0,
        arg: str = "",
        batch: Batch = (0, 0, 0, 0),
    ) -> StepReply:
        """One ``op`` (admit, record, probe, force) of breaker ``name``; ``u`` is
        uniform in [0, 1) (the open time's jitter), ``arg`` a lease id or a force action.
        ``now``: the caller's clock (``None``: the reply stays on Redis's)."""
        return StepReply.decode(self._run(name, policy, op, now, u, arg, batch), now)

    def record_many(
        self,
        batches: Sequence[tuple[str, bp.BreakerPolicy, bp.Outcomes]],
        now: float | None,
        rand: Callable[[], float],
    ) -> list[StepReply]:
        """A ``record`` step per ``(name, policy, outcomes)``, in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name, policy, pending in batches:
            self._run(
                name,
                policy,
                "record",
                now,
                rand(),
                "",
                (pending.calls, pending.failures, pending.slow, pending.trailing_failures),
                client=pipe,
            )
        return [StepReply.decode(raw, now) for raw in pipe.execute()]

    def names(self) -> list[str]:
        """Every breaker whose keys still exist, sorted. The names an earlier version
        listed in its set are included while their state lasts, and pruned from it after."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrange(self.keys.breaker_index(), 0, -1, withscores=True)
        pipe.smembers(self.keys.legacy_breakers())
        pipe.time()
        indexed, legacy, clock = pipe.execute()
        redis_now = redis_time(clock)
        live = {name for name, expires in indexed if expires > redis_now}
        unindexed = sorted(set(legacy) - live)
        if unindexed:
            pipe = self.client.pipeline(transaction=False)
            for name in unindexed:
                pipe.exists(self.keys.breaker(name))
            gone = [n for n, exists in zip(unindexed, pipe.execute(), strict=True) if not exists]
            if gone:
                self.client.srem(self.keys.legacy_breakers(), *gone)
            live.update(set(unindexed) - set(gone))
        return sorted(live)

    def _shift(self, clock: tuple[int, int], now: float | None) -> float:
        """What moves a stored time onto the caller's clock (``None``: this process's)."""
        if self.caller_clock:
            return 0.0
        return (time.time() if now is None else now) - redis_time(clock)

    def read_state(self, name: str, now: float | None = None) -> bp.BreakerState:
        """Breaker ``name``'s shared state (closed if never used), on the caller's
        clock ``now`` (``None``: this process's)."""
        return self.read_states([name], now)[0]

    def read_states(self, names: Sequence[str], now: float | None = None) -> list[bp.BreakerState]:
        """The shared state of each of ``names``, in one pipelined round trip, on
        the caller's clock ``now`` (``None``: this process's)."""
        if not names:
            return []
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        for name in names:
            pipe.hgetall(self.keys.breaker(name))
        clock, *raws = pipe.execute()
        shift = self._shift(clock, now)
        return [_on_clock(state_from_hash(raw), shift) for raw in raws]

    def read(self, name: str, now: float | None = None) -> dict[str, Any]:
        """A breaker's state for people: state (half-open once the open time is over),
        counts, probes; judged on Redis's clock (on ``now`` if the store runs on
        the caller's). Times are Redis's."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.breaker(name))
        pipe.hgetall(self.keys.breaker_window(name))
        pipe.hgetall(self.keys.breaker_leases(name))
        pipe.time()
        raw, window, leases, clock = pipe.execute()
        state = state_from_hash(raw)
        if not (self.caller_clock and now is not None):
            now = redis_time(clock)
        shown = state.state
        if shown == bp.OPEN and not state.forced and now >= state.open_until:
            shown = bp.HALF_OPEN
        totals = {"c": 0, "f": 0, "s": 0}
        for field, value in window.items():
            totals[field[0]] = totals.get(field[0], 0) + int(value)
        counting_down = shown == bp.OPEN and not state.forced
        return {
            "name": name,
            "kind": "breaker",
            "state": shown,
            "forced": state.forced,
            "open_remaining_seconds": (
                round(max(0.0, state.open_until - now), 3) if counting_down else None
            ),
            "trips": state.trips,
            "total_trips": state.total_trips,
            "consecutive_failures": state.consecutive,
            "window": {"calls": totals["c"], "failures": totals["f"], "slow": totals["s"]},
            "probes_in_flight": sum(1 for expires in leases.values() if float(expires) > now),
            "reason": state.reason,
            "changed_at": float(raw["changed_at"]) if raw.get("changed_at") else None,
        }

    def force(
        self, name: str, action: str, policy: bp.BreakerPolicy, now: float | None = None
    ) -> tuple[bp.BreakerState, bp.Change | None]:
        """An operator's open/close/reset, applied atomically and announced to every
        process; the state answered is on the caller's clock ``now`` (``None``: Redis's)."""
        if action not in ("open", "close", "reset"):
            raise ValueError(f"unknown action {action!r}: use open, close or reset")
        reply = self.step(name, policy, "force", now, arg=action)
        return reply.state, reply.change
