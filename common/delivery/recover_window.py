"""Level 5, the window a recover or bulk-retry job may name: pure, no clock, no database.

A job re-queues failed deliveries created in ``[since, until)``. A delivery can only
be sent again while its message still has its content: ``MESSAGE_RETENTION_DAYS``
expunges it (and ``ATTEMPT_RETENTION_DAYS`` deletes the record), so a window must lie
within the shorter of the two, counted back from now. ``until`` defaults to now, and
a later one means now: nothing created after the job starts is in it.

Near the edge a purge may be deciding about a message at the moment a job re-queues
its delivery (the purge's statement reads which messages are finished, then takes
them; a re-queue committed in between would leave a pending delivery to an expunged
body, or deleted). So a job leaves alone messages less than :data:`RETENTION_MARGIN`
from their expiry, however the window was named: the retention purge's statements
are cut at 60 s (``worker/delivery/resources.py``), far less than that margin, so the
two never touch the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "RETENTION_MARGIN",
    "Window",
    "WindowRefused",
    "checked_window",
    "recoverable_age",
    "retention_of",
]

RETENTION_MARGIN = timedelta(minutes=10)
DAY = timedelta(days=1)


class WindowRefused(ValueError):
    """A window that cannot be recovered: ``field`` (``since`` or ``until``) says which
    input is wrong, the message why and what to do."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime  # at most the time the job was asked for


def retention_of(message_retention_days: float, attempt_retention_days: float) -> timedelta:
    """How far back a message still has its content and its record."""
    return min(message_retention_days, attempt_retention_days) * DAY


def recoverable_age(message_retention_days: float, attempt_retention_days: float) -> timedelta:
    """The oldest message a job re-queues a delivery of (younger than the retention by
    :data:`RETENTION_MARGIN`); zero when the retention is shorter than the margin."""
    age = retention_of(message_retention_days, attempt_retention_days) - RETENTION_MARGIN
    return max(age, timedelta(0))


def checked_window(
    since: datetime,
    until: datetime | None,
    now: datetime,
    message_retention_days: float,
    attempt_retention_days: float,
) -> Window:
    """The window to recover, ``until`` no later than ``now``; :class:`WindowRefused`
    when ``until`` is not after ``since``, ``since`` is in the future or older than the
    retention, or the window is longer than the retention."""
    retention = retention_of(message_retention_days, attempt_retention_days)
    setting = (
        "MESSAGE_RETENTION_DAYS"
        if message_retention_days <= attempt_retention_days
        else "ATTEMPT_RETENTION_DAYS"
    )
    days = f"{retention / DAY:g} days"
    if until is not None and until <= since:
        raise WindowRefused("until", "must be later than since")
    if since > now:
        raise WindowRefused("since", "is in the future: nothing was created after it yet")
    oldest = now - retention
    if since < oldest:
        raise WindowRefused(
            "since",
            f"is older than {setting} ({days}) keeps messages: their content is gone; use a"
            f" since no earlier than {oldest.isoformat()}",
        )
    if until is not None and until - since > retention:
        raise WindowRefused("until", f"the window is longer than {setting} ({days})")
    return Window(since, now if until is None else min(until, now))
