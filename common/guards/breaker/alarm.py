"""Level 4 on level 3: a breaker that opens sets alarm ``breaker:<name>``, one
that closes clears it, and the alarm's transition goes to whoever tells people.

:func:`alarm_hook` builds the registry's ``on_transition`` for this; the API and
the CLI call it too when an operator forces a breaker.
"""

from __future__ import annotations

from typing import Protocol

import redis

from common.alarms.store import AlarmStore, Transition
from common.config import Settings
from common.guards.breaker import policy as bp

__all__ = ["Notify", "OnTransition", "alarm_hook"]


class OnTransition(Protocol):
    """Told when a breaker opens or closes, in the one process whose step made it."""

    def __call__(self, name: str, change: bp.Change) -> None: ...


class Notify(Protocol):
    """Told an alarm's set or clear, to notify people (Slack, webhook)."""

    def __call__(self, transition: Transition) -> None: ...


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
                severity="critical",
                details={"breaker": name, "reason": change.reason},
            )
        else:
            transition = store.clear(alarm_id, details={"breaker": name, "reason": change.reason})
        if transition is not None and notify is not None:
            notify(transition)

    return on_transition
