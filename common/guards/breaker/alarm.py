"""Level 4 on level 3: a breaker that opens sets alarm ``breaker:<name>``, one
that closes clears it, and the alarm's transition goes to whoever tells people.

Alarms by audience (:func:`breaker_severity`): a receiver's breaker
(``webhook:<host>``) is a customer's endpoint failing, a *warning* for the
status page and the API, not a page for the on-call, unless an operator listed
it in ``CRITICAL_SERVICES``; a breaker of anything else we call (Slack, a
service a ``GuardedTask`` wraps) is *critical*.

:func:`alarm_hook` builds the registry's ``on_transition`` for this; the API and
the CLI call it too when an operator forces a breaker.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Protocol

import redis

from common.alarms.store import AlarmStore, Transition
from common.config import Settings
from common.guards.breaker import policy as bp

__all__ = ["Notify", "OnTransition", "alarm_hook", "breaker_severity"]


class OnTransition(Protocol):
    """Told when a breaker opens or closes, in the one process whose step made it."""

    def __call__(self, name: str, change: bp.Change) -> None: ...


class Notify(Protocol):
    """Told an alarm's set or clear, to notify people (Slack, webhook)."""

    def __call__(self, transition: Transition) -> None: ...


RECEIVER_PREFIX = "webhook:"


def breaker_severity(name: str, critical_patterns: tuple[str, ...] = ()) -> str:
    """``critical`` or ``warning``: the severity of breaker ``name``'s alarm."""
    if any(fnmatchcase(name, pattern) for pattern in critical_patterns):
        return "critical"
    return "warning" if name.startswith(RECEIVER_PREFIX) else "critical"


def alarm_hook(
    client: redis.Redis, settings: Settings, notify: Notify | None = None
) -> OnTransition:
    """An ``on_transition`` that sets alarm ``breaker:<name>`` when a breaker opens
    and clears it when it closes (in the store ``settings`` configure), then
    hands the alarm transition to ``notify``."""

    def on_transition(name: str, change: bp.Change) -> None:
        store = AlarmStore.for_settings(client, settings)
        alarm_id = f"breaker:{name}"
        if change.new == bp.OPEN:
            transition = store.set(
                alarm_id,
                f"circuit breaker {name!r} is open: {change.reason}",
                severity=breaker_severity(name, settings.critical_service_patterns),
                details={"breaker": name, "reason": change.reason},
            )
        else:
            transition = store.clear(alarm_id, details={"breaker": name, "reason": change.reason})
        if transition is not None and notify is not None:
            notify(transition)

    return on_transition
