"""Level 4: the Redis side of the fleet-wide circuit breakers.

:class:`BreakerStore` runs ``policy.lua`` (one atomic step of one breaker: the
rules of ``policy.py``) and decodes its reply into a :class:`StepReply` at the
edge; it reads breakers for the registry (:meth:`BreakerStore.read_state`) and
for people (:meth:`BreakerStore.read`), and applies an operator's
open/close/reset (:meth:`BreakerStore.force`). Used by the registry, the API
and the CLI. Every key comes from :class:`~common.redis.keys.RedisKeys`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from common.guards.breaker import policy as bp
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

__all__ = ["BreakerStore", "StepReply", "state_from_hash"]

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
    def decode(cls, reply: Sequence[str]) -> StepReply:
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
        return cls(decoded, change, allowed == "1", probe or None, float(retry_in))


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
    """The breakers of one namespace in Redis: one Lua step per call."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.namespace = namespace
        self.keys = RedisKeys(namespace)
        self.channel = self.keys.breaker_events()
        self._script = client.register_script(_STEP_LUA)

    def script_keys(self, name: str) -> list[str]:
        """``policy.lua``'s KEYS, in its order."""
        keys = self.keys
        return [
            keys.breaker(name),
            keys.breaker_window(name),
            keys.breaker_leases(name),
            keys.breakers(),
        ]

    def _run(
        self,
        name: str,
        policy: bp.BreakerPolicy,
        op: str,
        now: float,
        u: float,
        arg: str,
        batch: Batch,
        client: Any = None,
    ) -> Any:
        args = [
            op,
            name,
            repr(now),
            repr(u),
            arg,
            *(repr(getattr(policy, f)) for f in _POLICY_FIELDS),
            *(str(n) for n in batch),
            self.channel,
        ]
        return self._script(keys=self.script_keys(name), args=args, client=client)

    def step(
        self,
        name: str,
        policy: bp.BreakerPolicy,
        op: str,
        now: float,
        u: float = 0.0,
        arg: str = "",
        batch: Batch = (0, 0, 0, 0),
    ) -> StepReply:
        """One ``op`` (admit, record, probe, force) of breaker ``name``; ``u`` is
        uniform in [0, 1) (the open time's jitter), ``arg`` a lease id or a force action."""
        return StepReply.decode(self._run(name, policy, op, now, u, arg, batch))

    def record_many(
        self,
        batches: Sequence[tuple[str, bp.BreakerPolicy, bp.Outcomes]],
        now: float,
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
        return [StepReply.decode(raw) for raw in pipe.execute()]

    def names(self) -> list[str]:
        return sorted(self.client.smembers(self.keys.breakers()))

    def read_state(self, name: str) -> bp.BreakerState:
        """Breaker ``name``'s shared state (closed if never used)."""
        return state_from_hash(self.client.hgetall(self.keys.breaker(name)))

    def read_states(self, names: Sequence[str]) -> list[bp.BreakerState]:
        """The shared state of each of ``names``, in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.breaker(name))
        return [state_from_hash(raw) for raw in pipe.execute()] if names else []

    def read(self, name: str) -> dict[str, Any]:
        """A breaker's state for people: state (half-open once the open time is over),
        counts, probes."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.breaker(name))
        pipe.hgetall(self.keys.breaker_window(name))
        pipe.hgetall(self.keys.breaker_leases(name))
        raw, window, leases = pipe.execute()
        state = state_from_hash(raw)
        now = time.time()
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
        """An operator's open/close/reset, applied atomically and announced to every process."""
        if action not in ("open", "close", "reset"):
            raise ValueError(f"unknown action {action!r}: use open, close or reset")
        reply = self.step(name, policy, "force", time.time() if now is None else now, arg=action)
        return reply.state, reply.change
