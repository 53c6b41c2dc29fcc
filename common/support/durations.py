"""No level: lists of durations as settings spell them (``"5s,5m,30m,2h"``)."""

from __future__ import annotations

import re

__all__ = ["UNITS", "parse_schedule"]

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_schedule(text: str) -> tuple[float, ...]:
    """Delays in seconds from ``"5s,5m,2h"``. Raises ``ValueError`` naming the bad part."""
    delays = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        match = _PART.fullmatch(part)
        if not match:
            raise ValueError(
                f"bad delay {part!r}: use a number with ms, s, m, h or d, e.g. '5s,5m,30m'"
            )
        delays.append(float(match.group(1)) * UNITS[match.group(2)])
    if not delays:
        raise ValueError("the schedule is empty: give at least one delay, e.g. '5s'")
    if len(delays) > 50:
        raise ValueError("more than 50 retries: shorten the schedule")
    return tuple(delays)
