"""``GET /status``: the operators' page, one server-rendered HTML page readable
at a glance.

Each level of the stack (config, connections, health, alarms, breakers,
limits, delivery, backlog) gets green, amber or red from :func:`levels`, a pure
function of what :func:`api.metrics.read_fleet` read (and, for the backlog, of
what :mod:`api.status_delivery` read from PostgreSQL); below come the open alarms
with their age, the breakers and limiters, the endpoints by state and the due
backlog's age, and a one-hour chart per service of the AIMD limit and the delivery
throughput (inline SVG drawn here: no script, no build step). The page reloads
itself every :data:`REFRESH_SECONDS`.

What one load reads is bounded whatever the number of receivers (anyone who can
create endpoints can name new hosts): the services shown by name (the
``METRICS_MAX_SERVICES`` busiest receivers, every service that is not a receiver,
and the breakers with an open alarm), and one chart, ``other``, for every other
receiver together.

A section that cannot be read (Redis or PostgreSQL down) is shown red, "unknown"
with the reason; the page itself always answers 200, because an outage is exactly
when it is read.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.metrics import FleetView, read_fleet
from api.operator import OPERATOR_ERRORS, require_operator
from api.status_delivery import (
    BACKLOG_AMBER_SECONDS,
    BACKLOG_RED_SECONDS,
    STATE_COLORS,
    backlog_gauge,
    backlog_level,
    endpoint_bar,
    read_overview,
)
from api.status_level import AMBER, GREEN, RED, Level, age_text
from common.connections.probes import describe_error
from common.guards.breaker.alarm import breaker_severity
from common.health.beat_store import BeatRecord, BeatStore
from common.health.beat_watch import BeatWatch, observe, stale_after
from common.health.fleet_metrics import FleetMetrics
from common.health.named_services import OTHER

# Operator routes: an admin key, or the private OPS_PORT listener (api/operator.py).
router = APIRouter(
    tags=["operations"], dependencies=[Depends(require_operator)], responses=OPERATOR_ERRORS
)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

REFRESH_SECONDS = 10
RECENT_MINUTES = 5  # the delivery level judges the last few minutes, not the whole hour
FAILING_SHARE = 0.5  # delivery is red when at least this share of recent attempts failed


def _worst(colors: list[str]) -> str:
    return RED if RED in colors else AMBER if AMBER in colors else GREEN


def levels(
    view: FleetView,
    history: dict[str, list[dict]] | None,
    namespace: str,
    critical_patterns: tuple[str, ...] = (),
    beat: Level | None = None,
    backlog: Level | None = None,
) -> list[Level]:
    """The colour of each level of the stack, bottom first (a pure function); ``beat``
    (:func:`beat_level`) follows health, ``backlog``
    (:func:`api.status_delivery.backlog_level`) comes last."""
    out = [Level("config", GREEN, f"settings loaded (namespace {namespace})")]

    deps = view.dependencies
    if not deps:
        out.append(Level("connections", AMBER, "no dependency monitors in this process"))
    else:
        colors = [
            RED if d.state == "down" else AMBER if d.state == "connecting" else GREEN
            for d in deps.values()
        ]
        out.append(
            Level(
                "connections", _worst(colors), ", ".join(f"{n} {d.state}" for n, d in deps.items())
            )
        )

    missing = [n for n, d in deps.items() if not d.up]
    if view.workers is None:
        out.append(
            Level(
                "health",
                RED,
                f"worker heartbeats unreadable: {view.errors.get('workers', 'unknown')}",
            )
        )
    else:
        ready = sum(1 for w in view.workers if w.get("consumer_connected"))
        api = f"API not ready (missing {', '.join(missing)})" if missing else "API ready"
        color = RED if missing or ready == 0 else AMBER if ready < len(view.workers) else GREEN
        out.append(Level("health", color, f"{api}; {ready} of {len(view.workers)} workers ready"))
    if beat is not None:
        out.append(beat)

    if view.alarms is None:
        out.append(Level("alarms", RED, f"unknown: {view.errors.get('alarms', 'unreadable')}"))
    else:
        critical = sum(1 for a in view.alarms if a.get("severity") == "critical")
        color = RED if critical else AMBER if view.alarms else GREEN
        out.append(
            Level(
                "alarms",
                color,
                f"{len(view.alarms)} open ({critical} critical)" if view.alarms else "none open",
            )
        )

    if view.breakers is None:
        out.append(Level("breakers", RED, f"unknown: {view.errors.get('breakers', 'unreadable')}"))
    else:
        opened = [b["name"] for b in view.breakers if b["state"] == "open"]
        half = [b["name"] for b in view.breakers if b["state"] == "half_open"]
        # Workers that lost Redis run per-process breakers: still guarded, no longer fleet-wide.
        fallback = [
            w.get("hostname", "?")
            for w in view.workers or []
            if (w.get("breakers") or {}).get("fallback")
        ]
        # A customer's receiver failing is amber; a breaker of ours (or one listed in
        # CRITICAL_SERVICES) is red: one flapping receiver must not hide an incident.
        critical = [n for n in opened if breaker_severity(n, critical_patterns) == "critical"]
        color = RED if critical else AMBER if opened or half or fallback else GREEN
        summary = (
            f"open: {', '.join(opened)}"
            if opened
            else f"half-open: {', '.join(half)}"
            if half
            else f"per-process fallback on {', '.join(fallback)}"
            if fallback
            else f"all {len(view.breakers)} closed"
            if view.breakers
            else "none yet (created on first call)"
        )
        out.append(Level("breakers", color, summary))

    if view.limits is None:
        out.append(Level("limits", RED, f"unknown: {view.errors.get('limits', 'unreadable')}"))
    else:
        full = [row["service"] for row in view.limits if row["in_flight"] >= row["limit"]]
        out.append(
            Level(
                "limits",
                AMBER if full else GREEN,
                f"at the limit: {', '.join(full)}"
                if full
                else f"all {len(view.limits)} have free slots"
                if view.limits
                else "none yet (created on first call)",
            )
        )

    if history is None:
        out.append(Level("delivery", RED, f"unknown: {view.errors.get('history', 'unreadable')}"))
    else:
        recent = [p for series in history.values() for p in series[-RECENT_MINUTES:]]
        attempts = sum(p["deliveries"] for p in recent)
        failures = sum(p["failures"] for p in recent)
        share = failures / attempts if attempts else 0.0
        color = RED if attempts and share >= FAILING_SHARE else AMBER if failures else GREEN
        summary = (
            f"{attempts} attempts, {failures} failed in the last {RECENT_MINUTES} min"
            if attempts
            else f"no attempts in the last {RECENT_MINUTES} min"
        )
        out.append(Level("delivery", color, summary))
    if backlog is not None:
        out.append(backlog)
    return out


def beat_level(record: BeatRecord | None, error: str | None, limit: float) -> Level:
    """Red when no beat sent the watchdogs within three intervals (the rule of alarm
    ``beat``, judged on this one read), amber while no beat holds the lease."""
    if error is not None:
        return Level("beat", RED, f"unknown: {error}")
    _, verdict = observe(BeatWatch(float("-inf")), record, True, 0.0, limit)
    if verdict.kind != "ok" or record is None:
        return Level("beat", RED, verdict.reason)
    if not record.active:
        return Level("beat", AMBER, f"no beat holds the lease; {verdict.reason}")
    return Level(
        "beat", GREEN, f"{record.active} schedules (token {record.token}); {verdict.reason}"
    )


def read_beat(app) -> Level:
    if getattr(app.state, "dependencies", None) is not None:
        redis_state = app.state.dependencies.snapshot().get("redis")
        if redis_state is not None and redis_state.state == "down":
            return beat_level(None, "Redis is unreachable", 1.0)
    settings = app.state.settings
    try:
        record = BeatStore(app.state.redis, settings.jenga_namespace).read()
    except (redis.RedisError, OSError) as error:
        return beat_level(None, describe_error(error), 1.0)
    limit = stale_after(
        settings.watchdog_interval_seconds,
        settings.beat_lock_ttl_seconds,
        settings.beat_lock_renew_seconds,
    )
    return beat_level(record, None, limit)


def sparkline(values: list[float | None], width: int = 240, height: int = 40) -> str:
    """SVG polyline points for ``values`` scaled into the box; gaps (None) are skipped."""
    known = [v for v in values if v is not None]
    top = max(known) if known and max(known) > 0 else 1.0
    step = width / max(1, len(values) - 1)
    points = [
        f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}"
        for i, v in enumerate(values)
        if v is not None
    ]
    return " ".join(points)


def charts(history: dict[str, list[dict]]) -> list[dict]:
    """One chart per service, every other receiver's together last (``other``)."""
    out = []
    for service, series in sorted(history.items(), key=lambda item: (item[0] == OTHER, item[0])):
        limits = [p["limit"] for p in series]
        throughput = [p["deliveries"] for p in series]
        out.append(
            {
                "service": service,
                "limit_points": sparkline(limits),
                "throughput_points": sparkline(throughput),
                "limit_now": next((v for v in reversed(limits) if v is not None), None),
                "throughput_hour": sum(throughput),
                "failures_hour": sum(p["failures"] for p in series),
            }
        )
    return out


@router.get("/status", response_class=HTMLResponse)
def status(request: Request) -> HTMLResponse:
    """The operators' status page (HTML, refreshes itself)."""
    app = request.app
    settings = app.state.settings
    view = read_fleet(app)
    history: dict[str, list[dict]] | None = None
    if "alarms" in view.errors and view.errors["alarms"] == "Redis is unreachable":
        view.errors["history"] = view.errors["alarms"]
    else:
        try:
            # The services shown by name and "other": a bounded read (the default).
            history = FleetMetrics(app.state.redis, settings.jenga_namespace).history(
                now=view.read_at
            )
        except (redis.RedisError, OSError) as error:
            view.errors["history"] = describe_error(error)
    overview, overview_error = read_overview(app)
    now = time.time()
    return templates.TemplateResponse(
        request,
        "status.html",
        {
            "refresh": REFRESH_SECONDS,
            "namespace": settings.jenga_namespace,
            "environment": settings.jenga_env,
            "levels": levels(
                view,
                history,
                settings.jenga_namespace,
                settings.critical_service_patterns,
                beat=read_beat(app),
                backlog=backlog_level(overview, overview_error),
            ),
            "view": view,
            "alarms": [
                dict(a, age=age_text(now - float(a.get("set_at", now)))) for a in view.alarms or []
            ],
            "charts": charts(history or {}),
            "overview": overview,
            "overview_error": overview_error,
            "endpoint_bar": endpoint_bar(overview.endpoints) if overview else [],
            "backlog_gauge": backlog_gauge(overview.oldest_due_seconds if overview else None),
            "state_colors": STATE_COLORS,
            "thresholds": {
                "amber": age_text(BACKLOG_AMBER_SECONDS),
                "red": age_text(BACKLOG_RED_SECONDS),
            },
            "max_services": settings.metrics_max_services,
            "generated_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now)),
        },
        headers={"Cache-Control": "no-store"},
    )
