"""Level 4: an operator forces a breaker open (until closed), closed, or reset
(closed, counts forgotten): the one flow behind ``POST /breakers/{name}/{action}``
and ``jenga breakers open|close|reset NAME``.

The step is atomic and announced to every process; a transition sets or clears
alarm ``breaker:{name}`` and queues the same notifications as a breaker that
opened by itself. Closing or resetting a name no breaker has is refused: a
misspelt name must not create a breaker that nothing uses.
"""

from __future__ import annotations

from typing import Any, Literal

import redis

from common.alarms.dispatch import send_notify_tasks
from common.config import Settings
from common.guards.breaker.alarm import alarm_hook
from common.guards.breaker.policy import policy_from_settings
from common.guards.breaker.store import BreakerStore
from common.guards.names import SERVICE_NAME_RULE, is_service_name

__all__ = ["Action", "InvalidBreakerName", "UnknownBreaker", "check_breaker_name", "force_breaker"]

Action = Literal["open", "close", "reset"]


class InvalidBreakerName(ValueError):
    """The name cannot be a breaker's (see :mod:`common.guards.names`)."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"invalid breaker name {name!r}: {SERVICE_NAME_RULE}")


class UnknownBreaker(LookupError):
    """Close or reset of a name no breaker has."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no breaker named {name!r}")


def check_breaker_name(name: str) -> None:
    """Raise :class:`InvalidBreakerName` unless ``name`` may name a breaker."""
    if not is_service_name(name):
        raise InvalidBreakerName(name)


def force_breaker(
    client: redis.Redis, settings: Settings, name: str, action: Action
) -> dict[str, Any]:
    """Apply ``action`` to breaker ``name`` and return its new state for people
    (as :meth:`BreakerStore.read`). Raises :class:`InvalidBreakerName`,
    :class:`UnknownBreaker`, ``ValueError`` for an unknown action, ``redis.RedisError``."""
    check_breaker_name(name)
    store = BreakerStore(client, settings.jenga_namespace)
    if action != "open" and name not in store.names():
        raise UnknownBreaker(name)
    _, change = store.force(name, action, policy_from_settings(settings))
    if change is not None:
        alarm_hook(client, settings, lambda transition: send_notify_tasks(settings, transition))(
            name, change
        )
    return store.read(name)
