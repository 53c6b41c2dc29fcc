"""Level 3: the one line every notifier tells people about a transition."""

from __future__ import annotations

from datetime import UTC, datetime

from common.alarms.store import Transition

__all__ = ["summary"]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summary(transition: Transition) -> str:
    """One line for people: what happened, to what, since when."""
    if transition.kind == "set":
        error = transition.details.get("error")
        reason = f": {error}" if error else ""
        return (
            f"ALARM SET [{transition.severity}] {transition.alarm_id} - "
            f"{transition.description}{reason} (at {_when(transition.at)})"
        )
    lasted = f" after {_duration(transition.at - transition.set_at)}" if transition.set_at else ""
    return (
        f"ALARM CLEARED {transition.alarm_id} - {transition.description}"
        f"{lasted} (at {_when(transition.at)})"
    )
