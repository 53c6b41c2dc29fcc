"""Level 2 for beat: its heartbeat file and the rule ``jenga beat health`` applies.

Every beat, active or standby, writes ``{HEARTBEAT_DIR}/{BEAT_NAME}.json`` at each
claim of the lease (every ``BEAT_LOCK_RENEW_SECONDS``): its role, its fencing token,
why it cannot reach Redis. Like the worker's, the file needs neither broker nor
Redis to read, so an outage of theirs never gets a healthy beat restarted.

:func:`probe_verdict`, a pure rule:

* live: the file is younger than ``STALE_AFTER_INTERVALS`` renewals (the loop turns);
* with ``active_only``: live and holding the lease.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from common.config import Settings
from common.health.heartbeat import STALE_AFTER_INTERVALS

__all__ = ["EXIT_DEAD", "EXIT_OK", "EXIT_STANDBY", "ProbeVerdict", "beat_name", "probe_verdict"]

# jenga beat health's exit codes (README "Command line"); 2 is a bad configuration.
EXIT_OK, EXIT_DEAD, EXIT_STANDBY = 0, 1, 3


def beat_name(settings: Settings) -> str:
    return settings.beat_name or f"beat@{socket.gethostname()}"


def probe_payload(scheduler: Any, now: float) -> dict[str, Any]:
    """What a beat writes (``scheduler``: a :class:`worker.beat_scheduler.FencedScheduler`)."""
    return {
        "name": scheduler.name,
        "holder": scheduler.holder,
        "pid": os.getpid(),
        "time": now,
        "interval": scheduler.jenga.beat_lock_renew_seconds,
        "role": scheduler.role,
        "token": scheduler.token,
        "active": scheduler.holder if scheduler.role == "active" else scheduler.refused_by,
        "lock_error": scheduler.lock_error,
    }


@dataclass(frozen=True)
class ProbeVerdict:
    exit_code: int
    reason: str


def probe_verdict(
    payload: dict[str, Any] | None, now: float, interval: float, *, active_only: bool = False
) -> ProbeVerdict:
    """Whether this host's beat is live (its loop turns), or with ``active_only`` also
    the one that schedules, from its last heartbeat file."""
    if payload is None:
        return ProbeVerdict(EXIT_DEAD, "no heartbeat file: beat has not started, or has stopped")
    at = payload.get("time")
    if not isinstance(at, int | float):
        return ProbeVerdict(EXIT_DEAD, "heartbeat file is unreadable")
    age, limit = now - at, STALE_AFTER_INTERVALS * interval
    if age > limit:
        return ProbeVerdict(
            EXIT_DEAD, f"heartbeat is stale: last beat {age:.1f}s ago (limit {limit:.1f}s)"
        )
    role = payload.get("role")
    if role == "active":
        return ProbeVerdict(EXIT_OK, f"active (token {payload.get('token')}), {age:.1f}s ago")
    if role == "orphan":
        what = f"Redis unreachable ({payload.get('lock_error')}): only the Redis and broker"
        state = f"orphaned: {what} watchdogs run"
    elif role == "standby":
        state = f"standby: {payload.get('active') or 'another beat'} is active"
    else:
        state = "starting: has not claimed the lease yet"
    code = EXIT_STANDBY if active_only else EXIT_OK
    return ProbeVerdict(code, f"live, {state}; last beat {age:.1f}s ago")
