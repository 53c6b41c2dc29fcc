"""The status page's delivery view: endpoints by state and the due backlog, read from
PostgreSQL (:mod:`common.delivery.overview`), judged and drawn here.

:func:`backlog_level` (pure) colours the ``backlog`` level by how long the delivery due
first has waited: past :data:`BACKLOG_AMBER_SECONDS` the workers are not keeping up,
past :data:`BACKLOG_RED_SECONDS` (twice the default ``DELIVERY_REDISPATCH_SECONDS``)
deliveries are stuck, not slow. :func:`endpoint_bar` and :func:`backlog_gauge` (pure)
lay out the two small SVG pictures: one bar of the endpoints split by state, and the
backlog's age on a log scale with the two thresholds marked.

Counts only: the page names no endpoint, URL or application, whoever reads it.
:func:`read_overview` bounds its time as the dependency check does (libpq connect
and TCP timeouts, ``statement_timeout`` of ``CHECK_TIMEOUT_SECONDS``) and does not try
while the monitor sees PostgreSQL down: the page still answers, the level ``unknown``.
"""

from __future__ import annotations

import math

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.status_level import AMBER, GREEN, RED, Level, age_text
from common.connections.probes import describe_error
from common.delivery.overview import (
    BACKLOG,
    DUE_COUNT_CAP,
    ENDPOINT_STATES,
    STATES,
    DeliveryOverview,
)

__all__ = [
    "BACKLOG_AMBER_SECONDS",
    "BACKLOG_RED_SECONDS",
    "STATE_COLORS",
    "backlog_gauge",
    "backlog_level",
    "endpoint_bar",
    "read_overview",
]

BACKLOG_AMBER_SECONDS = 60.0
BACKLOG_RED_SECONDS = 600.0
GAUGE_MAX_SECONDS = 86400.0  # a day: the gauge's right end (log scale from 1 s)
POSTGRES_DOWN = "PostgreSQL is unreachable"
# The page's own green, amber and red; paused is grey: asked for, not a fault.
STATE_COLORS = {
    "healthy": "#2e7d32",
    "failing": "#e69500",
    "paused": "#78909c",
    "disabled": "#c62828",
}


def backlog_level(overview: DeliveryOverview | None, error: str | None) -> Level:
    """The ``backlog`` level: red when unknown or when the delivery due first has waited
    :data:`BACKLOG_RED_SECONDS`, amber past :data:`BACKLOG_AMBER_SECONDS`."""
    if overview is None:
        return Level("backlog", RED, f"unknown: {error or 'unreadable'}")
    age = overview.oldest_due_seconds
    if age is None:
        return Level("backlog", GREEN, "nothing due")
    due = f"{overview.due}+" if overview.due_capped else str(overview.due)
    color = RED if age >= BACKLOG_RED_SECONDS else AMBER if age >= BACKLOG_AMBER_SECONDS else GREEN
    return Level("backlog", color, f"{due} due now, the oldest waiting {age_text(age)}")


def endpoint_bar(endpoints: dict[str, int], width: int = 240) -> list[dict]:
    """Segments of one bar of ``width`` px, one per state with endpoints, in the order
    of :data:`common.delivery.overview.STATES`: ``state``, ``count``, ``x``, ``width``,
    ``color``. A state with any endpoint is at least 2 px wide, so one in a thousand shows."""
    shown = [(state, endpoints[state]) for state in STATES if endpoints.get(state, 0) > 0]
    total = sum(n for _, n in shown)
    if not total:
        return []
    widths = [max(2.0, width * n / total) for _, n in shown]
    scale = width / sum(widths)
    segments, x = [], 0.0
    for (state, n), w in zip(shown, widths, strict=True):
        segments.append(
            {
                "state": state,
                "count": n,
                "x": round(x, 1),
                "width": round(w * scale, 1),
                "color": STATE_COLORS[state],
            }
        )
        x += w * scale
    return segments


def _log_x(seconds: float, width: int) -> float:
    """``seconds`` on a log scale from 1 s (0) to :data:`GAUGE_MAX_SECONDS` (``width``)."""
    clamped = min(max(seconds, 1.0), GAUGE_MAX_SECONDS)
    return round(width * math.log(clamped) / math.log(GAUGE_MAX_SECONDS), 1)


def backlog_gauge(oldest_due_seconds: float | None, width: int = 240) -> dict:
    """The backlog's age as a bar on a log scale (1 s to a day): the ``fill`` width and
    the x of the ``amber`` and ``red`` thresholds."""
    fill = 0.0 if oldest_due_seconds is None else _log_x(oldest_due_seconds, width)
    return {
        "fill": fill,
        "amber": _log_x(BACKLOG_AMBER_SECONDS, width),
        "red": _log_x(BACKLOG_RED_SECONDS, width),
    }


def read_overview(app: FastAPI) -> tuple[DeliveryOverview | None, str | None]:
    """Endpoints by state and the due backlog, or None and why not (I/O)."""
    dependencies = getattr(app.state, "dependencies", None)
    if dependencies is not None:
        postgres = dependencies.snapshot().get("postgres")
        if postgres is not None and postgres.state == "down":
            return None, POSTGRES_DOWN  # don't make the page wait for a connect timeout
    timeout_ms = max(1, int(app.state.settings.check_timeout_seconds * 1000))
    try:
        with app.state.read_engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {timeout_ms}"))
            endpoints = conn.exec_driver_sql(ENDPOINT_STATES).mappings().one()
            backlog = conn.exec_driver_sql(BACKLOG, {"cap": DUE_COUNT_CAP}).mappings().one()
    except (SQLAlchemyError, OSError) as error:
        return None, describe_error(error)
    oldest = backlog["oldest_due_seconds"]
    return (
        DeliveryOverview(
            endpoints={state: int(n) for state, n in endpoints.items()},
            due=int(backlog["due"]),
            oldest_due_seconds=None if oldest is None else max(0.0, float(oldest)),
        ),
        None,
    )
