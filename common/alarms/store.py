"""Level 3: alarm state in Redis, shared by the whole fleet.

Every transition is decided and written by one Lua script, so any number of
watchdogs (two beats, many workers) checking the same dependency at once
produce exactly one "set" and one "clear" per incident: Redis runs a script
atomically, and only the caller whose script made the transition gets a
:class:`Transition` back (and is the one that notifies people). The rule is
:mod:`common.alarms.policy`'s; its twin ``policy.lua`` applies it in Redis, and
:class:`TransitionReply` decodes what the script answers.

Keys: ``RedisKeys.alarms_active``, ``alarm`` and ``alarms_history``
(:mod:`common.redis.keys`; the README's "Redis key layout" says what each holds).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from common.alarms.policy import Kind
from common.config import Settings
from common.redis.client import wait_for_replica
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

SEVERITIES = ("critical", "warning", "info")

# policy.py's rule, applied atomically; KEYS, ARGV and the reply are described in the file.
_TRANSITION_LUA = read_lua("common.alarms", "policy.lua")


@dataclass(frozen=True)
class Transition:
    """One alarm opening ("set") or closing ("clear"); what notifiers tell people."""

    alarm_id: str
    kind: str  # "set" | "clear"
    description: str
    severity: str
    at: float  # unix time of the transition
    details: dict[str, Any] = field(default_factory=dict)
    set_at: float | None = None  # when the alarm opened (for a clear: how long it lasted)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transition:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _details_json(details: dict | None) -> str:
    return json.dumps(details or {}, default=str, sort_keys=True)


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class TransitionReply:
    """What ``policy.lua`` answers when its step opened or closed the alarm: the
    stored description and severity (a clear reports the set's), when it opened and
    when this step ran (``at``)."""

    kind: Kind
    description: str
    severity: str
    set_at: float
    at: float

    @classmethod
    def decode(cls, reply: Any) -> TransitionReply | None:
        """None for the script's ``false`` (no transition)."""
        if not reply:
            return None
        kind, description, severity, set_at, at = reply
        return cls(kind, description, severity, float(set_at), float(at))


class AlarmStore:
    """Open alarms and their history in Redis; every method is one round trip.

    ``clear_after``: consecutive passing checks before an open alarm clears;
    ``history_max``: about how many set/clear events the history keeps;
    ``clock``: unix time for tests; by default Redis's, so that every watchdog
    stamps transitions on one clock whatever its own says.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        namespace: str,
        clear_after: int = 3,
        history_max: int = 1000,
        clock: Callable[[], float] | None = None,
    ):
        if clear_after < 1:
            raise ValueError("clear_after must be >= 1")
        self.redis = redis_client
        self.keys = RedisKeys(namespace)
        self.clear_after = clear_after
        self.history_max = history_max
        self.clock = clock
        self._script = redis_client.register_script(_TRANSITION_LUA)

    @classmethod
    def for_settings(cls, redis_client: redis.Redis, settings: Settings) -> AlarmStore:
        """The store as configured: ``JENGA_NAMESPACE``, ``ALARM_CLEAR_AFTER``,
        ``ALARM_HISTORY_MAX``."""
        return cls(
            redis_client,
            settings.jenga_namespace,
            clear_after=settings.alarm_clear_after,
            history_max=settings.alarm_history_max,
        )

    def _run(
        self,
        mode: str,
        alarm_id: str,
        ok: bool,
        description: str,
        severity: str,
        details: dict | None,
        at: float | None = None,
    ) -> Transition | None:
        if not alarm_id:
            raise ValueError("alarm_id must not be empty")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        if at is None and self.clock is not None:
            at = self.clock()
        reply = TransitionReply.decode(
            self._script(
                keys=[
                    self.keys.alarms_active(),
                    self.keys.alarm(alarm_id),
                    self.keys.alarms_history(),
                ],
                args=[
                    mode,
                    alarm_id,
                    "1" if ok else "0",
                    description,
                    severity,
                    _details_json(details),
                    "" if at is None else repr(float(at)),  # '': Redis's clock
                    self.clear_after,
                    self.history_max,
                ],
            )
        )
        if reply is None:
            return None
        wait_for_replica(self.redis)  # the transition is told once, even across a failover
        return Transition(
            alarm_id,
            reply.kind,
            reply.description,
            reply.severity,
            reply.at,
            dict(details or {}),
            reply.set_at,
        )

    def record_check(
        self,
        alarm_id: str,
        ok: bool,
        description: str,
        severity: str = "critical",
        details: dict | None = None,
    ) -> Transition | None:
        """Record one watchdog check; returns the transition it caused, if any
        (hysteresis applies)."""
        return self._run("check", alarm_id, ok, description, severity, details)

    def set(
        self,
        alarm_id: str,
        description: str,
        severity: str = "critical",
        details: dict | None = None,
        at: float | None = None,
    ) -> Transition | None:
        """Open the alarm unless it is open; ``at`` backdates it (reconciling a set
        made while Redis was down)."""
        return self._run("set", alarm_id, False, description, severity, details, at)

    def clear(self, alarm_id: str, details: dict | None = None) -> Transition | None:
        """Close the alarm if it is open; None if it was not."""
        return self._run("clear", alarm_id, True, "", "critical", details)

    def is_open(self, alarm_id: str) -> bool:
        return bool(self.redis.sismember(self.keys.alarms_active(), alarm_id))

    def active(self) -> list[dict]:
        """Open alarms, oldest first."""
        ids = sorted(self.redis.smembers(self.keys.alarms_active()))
        pipe = self.redis.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self.keys.alarm(alarm_id))
        alarms = []
        for alarm_id, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:  # removed between the two reads
                continue
            alarms.append(
                {
                    "id": alarm_id,
                    "description": raw.get("description", ""),
                    "severity": raw.get("severity", "critical"),
                    "set_at": float(raw.get("set_at", 0)),
                    "passes": int(raw.get("passes", 0)),
                    "last_check_at": float(raw.get("last_check_at", 0)),
                    "last_check": _loads(raw.get("details")),
                }
            )
        return sorted(alarms, key=lambda a: (a["set_at"], a["id"]))

    def history(self, limit: int = 100) -> list[dict]:
        """The latest set/clear events, newest first."""
        entries = self.redis.xrevrange(self.keys.alarms_history(), count=max(1, limit))
        return [
            {
                "event_id": event_id,
                "alarm_id": data.get("alarm_id", ""),
                "kind": data.get("kind", ""),
                "description": data.get("description", ""),
                "severity": data.get("severity", ""),
                "at": float(data.get("at", 0)),
                "set_at": float(data.get("set_at", 0)),
                "details": _loads(data.get("details")),
            }
            for event_id, data in entries
        ]
