"""``GET …/endpoints/{ep}/stats``: how an endpoint's deliveries went, per hour or day.

Counts of the deliveries created in each period by status, and of their attempts by
outcome (the rule and its index path: :mod:`common.delivery.stats`). Every period of
the window is listed, empty ones too, so a chart needs no gaps filled; ``total`` adds
them up. The window defaults to the last 24 hours (``period=hour``) or 30 days
(``period=day``) and holds at most 200 periods: past that, a 422 naming ``since``.

A key that may read the application; another application's endpoint answers 404.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from api.endpoints import endpoint_or_404
from api.messages import database_now
from api.search import TimeWindow, field_error, time_window
from api.tenancy import APP_ERRORS, current_app, db_session
from common.delivery.models import App
from common.delivery.stats import (
    ENDPOINT_STATS,
    MAX_PERIODS,
    PERIODS,
    period_count,
    period_floor,
    periods,
)

__all__ = ["router"]

router = APIRouter(tags=["endpoints"], responses=APP_ERRORS)

DEFAULT_SPAN = {"hour": timedelta(hours=24), "day": timedelta(days=30)}
COUNTS = ("delivered", "failed", "pending", "attempts_succeeded", "attempts_failed")


class Counts(BaseModel):
    delivered: int = 0
    failed: int = 0
    pending: int = Field(default=0, description="Not delivered or failed yet (paused too).")
    attempts_succeeded: int = Field(default=0, description="Attempts answered with a 2xx.")
    attempts_failed: int = Field(default=0, description="Any other answer, or none.")


class PeriodCounts(Counts):
    start: datetime
    end: datetime


class EndpointStats(BaseModel):
    endpoint_id: str
    period: str
    since: datetime
    until: datetime
    total: Counts
    data: list[PeriodCounts] = Field(description="Every period of the window, in order.")


def stats_window(window: TimeWindow, period: str, now: datetime) -> tuple[datetime, datetime]:
    """``[since, until)`` with the defaults filled in; a 422 past :data:`MAX_PERIODS`."""
    until = window.until or now
    try:
        since = window.since or until - DEFAULT_SPAN[period]
    except OverflowError:
        raise field_error("until", "too early for the default window; give since") from None
    if since >= until:
        raise field_error("since", f"must be earlier than until ({until.isoformat()})")
    count = period_count(since, until, period)
    if count > MAX_PERIODS:
        raise field_error(
            "since",
            f"the window holds {count} periods of one {period}; at most {MAX_PERIODS}:"
            " narrow it, or ask for a longer period",
        )
    return since, until


@router.get("/{endpoint_id}/stats", response_model=EndpointStats)
def endpoint_stats(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    period: Literal[tuple(PERIODS)] = Query(default="hour", description="UTC hours or days."),
    window: TimeWindow = Depends(time_window),
) -> EndpointStats:
    """Per period: the deliveries created then, by status, and their attempts, by
    outcome."""
    endpoint = endpoint_or_404(session, app, endpoint_id)
    since, until = stats_window(window, period, database_now(session))
    rows = session.execute(
        text(ENDPOINT_STATS),
        {"period": period, "endpoint_id": endpoint.id, "since": since, "until": until},
    )
    counted = {row.start: row for row in rows}
    data = []
    for part in periods(since, until, period):
        row = counted.get(period_floor(part.start, period))
        data.append(
            PeriodCounts(
                start=part.start,
                end=part.end,
                **({name: getattr(row, name) for name in COUNTS} if row else {}),
            )
        )
    total = Counts(**{name: sum(getattr(p, name) for p in data) for name in COUNTS})
    return EndpointStats(
        endpoint_id=endpoint.id,
        period=period,
        since=since,
        until=until,
        total=total,
        data=data,
    )
