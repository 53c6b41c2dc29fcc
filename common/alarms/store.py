"""Alarm state in Redis, shared by the whole fleet.

Every transition is decided and written by one Lua script, so any number of
watchdogs (two beats, many workers) checking the same dependency at once
produce exactly one "set" and one "clear" per incident: Redis runs a script
atomically, and only the caller whose script made the transition gets a
:class:`Transition` back (and is the one that notifies people). The rule is
:mod:`common.alarms.policy`'s, written once more in Lua.

Key layout (``{ns}`` is ``JENGA_NAMESPACE``):

* ``{ns}:alarms:active`` - set of the ids of open alarms
* ``{ns}:alarm:{id}`` - hash of one open alarm: ``id``, ``description``,
  ``severity``, ``set_at``, ``passes`` (consecutive passing checks),
  ``details`` (JSON of the last check result), ``last_check_at``
* ``{ns}:alarms:history`` - stream of set/clear events, trimmed to about
  ``history_max`` entries (``XADD MAXLEN ~``)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from common.redis.keys import RedisKeys

SEVERITIES = ("critical", "warning", "info")

# KEYS: active set, alarm hash, history stream
# ARGV: mode (check|set|clear), id, ok (1|0), description, severity,
#       details JSON, now, clear_after, history_max
_TRANSITION_LUA = """
local mode, id, ok = ARGV[1], ARGV[2], ARGV[3] == '1'
local description, severity, details, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local clear_after, history_max = tonumber(ARGV[8]), ARGV[9]
local is_open = redis.call('SISMEMBER', KEYS[1], id) == 1
local kind = false
if mode == 'check' then
  if not is_open then
    if not ok then kind = 'set' end
  elseif ok then
    if redis.call('HINCRBY', KEYS[2], 'passes', 1) >= clear_after then kind = 'clear' end
  else
    redis.call('HSET', KEYS[2], 'passes', 0)
  end
elseif mode == 'set' then
  if not is_open then kind = 'set' end
elseif mode == 'clear' then
  if is_open then kind = 'clear' end
end
local set_at = now
if kind == 'set' then
  redis.call('SADD', KEYS[1], id)
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'id', id, 'description', description, 'severity', severity,
             'set_at', now, 'passes', 0, 'details', details, 'last_check_at', now)
elseif kind == 'clear' then
  local stored = redis.call('HMGET', KEYS[2], 'description', 'severity', 'set_at')
  description, severity, set_at = stored[1] or description, stored[2] or severity, stored[3] or now
  redis.call('SREM', KEYS[1], id)
  redis.call('DEL', KEYS[2])
elseif is_open then
  redis.call('HSET', KEYS[2], 'details', details, 'last_check_at', now)
end
if not kind then return false end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', history_max, '*', 'alarm_id', id, 'kind', kind,
           'description', description, 'severity', severity, 'at', now, 'set_at', set_at,
           'details', details)
return {kind, description, severity, set_at}
"""


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


class AlarmStore:
    """Open alarms and their history in Redis; every method is one round trip.

    ``clear_after``: consecutive passing checks before an open alarm clears;
    ``history_max``: about how many set/clear events the history keeps;
    ``clock``: unix time, injectable for tests.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        namespace: str,
        clear_after: int = 3,
        history_max: int = 1000,
        clock: Callable[[], float] = time.time,
    ):
        if clear_after < 1:
            raise ValueError("clear_after must be >= 1")
        self.redis = redis_client
        self.keys = RedisKeys(namespace)
        self.clear_after = clear_after
        self.history_max = history_max
        self.clock = clock
        self._script = redis_client.register_script(_TRANSITION_LUA)

    @property
    def active_key(self) -> str:
        return self.keys.key("alarms", "active")

    @property
    def history_key(self) -> str:
        return self.keys.key("alarms", "history")

    def alarm_key(self, alarm_id: str) -> str:
        return self.keys.key("alarm", alarm_id)

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
        now = self.clock() if at is None else at
        result = self._script(
            keys=[self.active_key, self.alarm_key(alarm_id), self.history_key],
            args=[mode, alarm_id, "1" if ok else "0", description, severity,
                  _details_json(details), repr(float(now)), self.clear_after, self.history_max],
        )
        if not result:
            return None
        kind, stored_description, stored_severity, set_at = result
        return Transition(alarm_id, kind, stored_description, stored_severity, float(now),
                          dict(details or {}), float(set_at))

    def record_check(
        self, alarm_id: str, ok: bool, description: str, severity: str = "critical", details: dict | None = None
    ) -> Transition | None:
        """Record one watchdog check; returns the transition it caused, if any (hysteresis applies)."""
        return self._run("check", alarm_id, ok, description, severity, details)

    def set(
        self,
        alarm_id: str,
        description: str,
        severity: str = "critical",
        details: dict | None = None,
        at: float | None = None,
    ) -> Transition | None:
        """Open the alarm unless it is open; ``at`` backdates it (reconciling a set made while Redis was down)."""
        return self._run("set", alarm_id, False, description, severity, details, at)

    def clear(self, alarm_id: str, details: dict | None = None) -> Transition | None:
        """Close the alarm if it is open; None if it was not."""
        return self._run("clear", alarm_id, True, "", "critical", details)

    def is_open(self, alarm_id: str) -> bool:
        return bool(self.redis.sismember(self.active_key, alarm_id))

    def active(self) -> list[dict]:
        """Open alarms, oldest first."""
        ids = sorted(self.redis.smembers(self.active_key))
        pipe = self.redis.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self.alarm_key(alarm_id))
        alarms = []
        for alarm_id, raw in zip(ids, pipe.execute(), strict=True):
            if not raw:  # removed between the two reads
                continue
            alarms.append({
                "id": alarm_id,
                "description": raw.get("description", ""),
                "severity": raw.get("severity", "critical"),
                "set_at": float(raw.get("set_at", 0)),
                "passes": int(raw.get("passes", 0)),
                "last_check_at": float(raw.get("last_check_at", 0)),
                "last_check": _loads(raw.get("details")),
            })
        return sorted(alarms, key=lambda a: (a["set_at"], a["id"]))

    def history(self, limit: int = 100) -> list[dict]:
        """The latest set/clear events, newest first."""
        entries = self.redis.xrevrange(self.history_key, count=max(1, limit))
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
