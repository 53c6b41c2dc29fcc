"""Reading an HTTP ``Retry-After`` header (RFC 9110 §10.2.3): delta-seconds or
an HTTP date. One parser for every caller that talks to a service we don't
control (webhook receivers, Slack); each caller chooses its own cap."""

from __future__ import annotations

import math
from datetime import UTC
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, now: float, cap: float) -> float | None:
    """Seconds to wait, in ``[0, cap]``; None when the header is absent or unreadable.
    ``now`` is Unix time, used for the HTTP-date form."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, not this machine's local time
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), cap)
