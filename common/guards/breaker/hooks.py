"""Level 4: what the process's default breaker registry reports to.

The default registry (:func:`default_registry`) sets and clears alarm
``breaker:<name>`` and hands the alarm's transition to the notifier the hosting
process installed with :func:`set_alarm_notifier` (the worker does it at start,
before its pool forks); its fallback changes go to the listener of
:func:`set_fallback_listener`. Both are looked up when used, so whichever code
builds the registry first (``GuardedTask`` or the ``SharedCircuitBreaker``
drop-in) gets the same hooks.
"""

from __future__ import annotations

from typing import Protocol

from common.alarms.store import Transition
from common.guards.breaker.alarm import Notify
from common.support.per_process import ProcessSlot

__all__ = [
    "FallbackListener",
    "notify_installed",
    "report_fallback",
    "set_alarm_notifier",
    "set_fallback_listener",
]


class FallbackListener(Protocol):
    """Told ``(fallback, error)`` when a registry enters or leaves per-process fallback."""

    def __call__(self, fallback: bool, error: str | None) -> None: ...


# Installed by the hosting process (the worker, at start: worker/steps/breakers.py) and
# looked up when used, so it does not matter which code builds the registry first
# (a SharedCircuitBreaker or a GuardedTask): alarms always reach people.
_alarm_notifier: ProcessSlot[Notify | None] = ProcessSlot(None)
_fallback_listener: ProcessSlot[FallbackListener | None] = ProcessSlot(None)


def set_alarm_notifier(notify: Notify | None) -> None:
    """Who this process tells about a breaker alarm's set/clear (``None``: nobody;
    the alarm is still set)."""
    _alarm_notifier.set(notify)


def set_fallback_listener(listener: FallbackListener | None) -> None:
    """Told ``(fallback, error)`` when this process's default registry enters or
    leaves per-process fallback."""
    _fallback_listener.set(listener)


def notify_installed(transition: Transition) -> None:
    """Hand a breaker alarm's transition to the installed notifier, if any."""
    notify = _alarm_notifier.get()
    if notify is not None:
        notify(transition)


def report_fallback(fallback: bool, error: str | None) -> None:
    """Tell the installed fallback listener, if any."""
    listener = _fallback_listener.get()
    if listener is not None:
        listener(fallback, error)
