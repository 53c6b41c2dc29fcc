"""An endpoint's delivery counts per hour or day: the periods of a window (pure) and the
statement that counts them (``GET …/endpoints/{ep}/stats``).

For each period (UTC hours or days, the first and last cut to the window) the
statement counts the endpoint's deliveries *created* in it, by their status now
(``delivered``, ``failed``, ``pending``: paused ones included), and those deliveries'
attempts by outcome (succeeded: a 2xx; failed: any other status, or no answer).
Attempts are counted in their delivery's period, not by their own time: so the whole
count reads the endpoint's range of ``ix_webhook_deliveries_endpoint_created`` (its
statuses from the index itself) and, per delivery, its attempts from
``ix_webhook_attempts_delivery``; never more than that range, whatever the size of
the tables. A window holds at most :data:`MAX_PERIODS` periods.

:func:`periods` and ``date_trunc(period, created_at, 'UTC')`` in
:data:`ENDPOINT_STATS` cut time at the same instants; the tests hold them to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["ENDPOINT_STATS", "MAX_PERIODS", "PERIODS", "Period", "period_count", "periods"]

PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_PERIODS = 200


@dataclass(frozen=True)
class Period:
    """``[start, end)``, in UTC."""

    start: datetime
    end: datetime


def period_floor(at: datetime, period: str) -> datetime:
    """The start of the UTC hour or day holding ``at``."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if period == "day" else at


def period_count(since: datetime, until: datetime, period: str) -> int:
    """How many periods ``[since, until)`` touches (``since`` < ``until``)."""
    return -((period_floor(since, period) - until) // PERIODS[period])


def periods(since: datetime, until: datetime, period: str) -> list[Period]:
    """The periods of ``[since, until)``, in order, the first starting at ``since`` and
    the last ending at ``until``."""
    step, found = PERIODS[period], []
    start = period_floor(since, period)
    while start < until:
        # Compared, not added, first: start + step may be past datetime's last day.
        end = until if until - start <= step else start + step
        found.append(Period(max(start, since), end))
        start = end
    return found


# Paused deliveries are pending too. The LATERAL count is one probe of the attempt
# index per delivery; delivered and failed count from the endpoint index (INCLUDE status).
ENDPOINT_STATS = """
    SELECT date_trunc(:period, d.created_at, 'UTC') AS start,
           count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
           count(*) FILTER (WHERE d.status = 'failed') AS failed,
           count(*) FILTER (WHERE d.status = 'pending') AS pending,
           coalesce(sum(a.succeeded), 0) AS attempts_succeeded,
           coalesce(sum(a.failed), 0) AS attempts_failed
    FROM webhook_deliveries d
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS succeeded,
               count(*) FILTER (WHERE status_code IS NULL
                                   OR status_code NOT BETWEEN 200 AND 299) AS failed
        FROM webhook_attempts WHERE delivery_id = d.id) a
    WHERE d.endpoint_id = :endpoint_id AND d.created_at >= :since AND d.created_at < :until
    GROUP BY 1
    """
