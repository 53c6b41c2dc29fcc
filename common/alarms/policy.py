"""Level 3, alarm hysteresis: when a watchdog's check result opens or clears an alarm.

The rule, as a pure function of the previous state and one check result:

* closed + failed check  -> open (a "set" transition), pass count 0
* closed + passing check -> stays closed; nothing to say
* open + failed check    -> stays open, pass count back to 0 (no second set)
* open + passing check   -> pass count + 1; at ``clear_after`` consecutive
  passes it closes (a "clear" transition)

So an alarm never clears without having been set, and never sets twice while
open: each incident gives exactly one set and one clear. ``clear_after``
(``ALARM_CLEAR_AFTER``, default 3) keeps a flapping dependency from paging
people on every other check.

The direct path used by circuit breakers (:func:`decide_set`,
:func:`decide_clear`) has no hysteresis of its own: the breaker already has it.

Its twin ``policy.lua`` (same folder, same stem) applies the same rule
atomically in Redis for :class:`common.alarms.store.AlarmStore`;
``tests/integration/test_alarm_store.py`` runs random sequences through both
and demands they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["set", "clear"]


@dataclass(frozen=True)
class AlarmState:
    """``open``: the alarm is active; ``passes``: consecutive passing checks since
    it opened (or since its last failed check)."""

    open: bool = False
    passes: int = 0


CLOSED = AlarmState()


def decide(state: AlarmState, ok: bool, clear_after: int) -> tuple[AlarmState, Kind | None]:
    """The next state after one check result, and the transition it causes (if any)."""
    if clear_after < 1:
        raise ValueError("clear_after must be >= 1")
    if not state.open:
        return (CLOSED, None) if ok else (AlarmState(open=True), "set")
    if not ok:
        return AlarmState(open=True), None
    passes = state.passes + 1
    if passes >= clear_after:
        return CLOSED, "clear"
    return AlarmState(open=True, passes=passes), None


def decide_set(state: AlarmState) -> tuple[AlarmState, Kind | None]:
    """Open unless already open."""
    return (state, None) if state.open else (AlarmState(open=True), "set")


def decide_clear(state: AlarmState) -> tuple[AlarmState, Kind | None]:
    """Close if open; a clear without a prior set is no transition."""
    return (CLOSED, "clear") if state.open else (CLOSED, None)
