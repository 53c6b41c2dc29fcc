"""Reading an HTTP ``Retry-After`` header (RFC 9110 §10.2.3): delta-seconds or
an HTTP date. One parser for every caller that talks to a service we don't
control (webhook receivers, Slack); each caller chooses its own cap."""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime

# delta-seconds is digits (RFC 9110); a fraction and a sign are tolerated, but not what
# float() also reads ("inf", "1e9", "1_0"): those are garbage, not a delay.
DELTA_SECONDS = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")


def retry_after_seconds(value: str | None, now: float, cap: float) -> float | None:
    """Seconds to wait, in ``[0, cap]``: a negative delta or a past date is 0, a
    delay of years is ``cap``; None when the header is absent or unreadable.
    ``now`` is Unix time, used for the HTTP-date form."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, not this machine's local time
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(0.0, seconds), cap)
