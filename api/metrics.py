"""``GET /metrics``: Prometheus metrics of the whole fleet, read at scrape time.

Two collectors feed one registry per app:

* :class:`common.health.fleet_metrics.FleetCollector`: counters and histograms that
  workers (any number of hosts and prefork processes) add up in Redis
  (deliveries by outcome, delivery duration).
* :func:`state_families`: gauges of the current state: this API's view of
  each dependency, open alarms, the breakers and limits of the services shown by
  name (from Redis), and the depth of each Celery queue when the broker is Redis.

**Bounded whatever the number of receivers.** Only the services shown by name
(:mod:`common.health.named_services`: the ``METRICS_MAX_SERVICES`` busiest
receivers and every service that is not a receiver) are read, plus the breakers
with an open alarm (at most ``METRICS_MAX_SERVICES`` of them besides): a fixed
number of Redis keys per scrape or page load. In the families, a receiver without
a name is counted under ``other``: its breaker (open alarm) in
``jenga_breaker_*{breaker="other"}``, its alarm in ``alarm_id="breaker:other"``.

A source that cannot be read (Redis down) is left out and reported as
``jenga_metrics_source_up{source=...} 0``; the scrape itself still answers 200,
so Prometheus keeps the dependency gauges that explain the outage.

:func:`read_fleet` is the one reader of that state; the status page uses it too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from api.operator import OPERATOR_ERRORS, require_operator
from common.broker import is_redis_broker, queue_names
from common.connections.probes import describe_error
from common.health.fleet_metrics import FleetCollector, FleetMetrics
from common.health.heartbeat import read_heartbeats
from common.health.named_services import OTHER, Named, is_receiver, read_named
from common.redis.client import make_redis
from common.redis.keys import RedisKeys
from common.support.logs import log_event

# Operator routes: an admin key, or the private OPS_PORT listener (api/operator.py).
router = APIRouter(
    tags=["operations"], dependencies=[Depends(require_operator)], responses=OPERATOR_ERRORS
)
log = logging.getLogger("jenga.api")

DEPENDENCY_STATES = ("connecting", "up", "down")
BREAKER_STATES = ("closed", "open", "half_open")
REDIS_DOWN = "Redis is unreachable"
BREAKER_ALARM = "breaker:"  # the id of breaker <name>'s alarm is breaker:<name>


@dataclass
class FleetView:
    """What the operators' views show, read once per request. A section that
    could not be read is None, with the reason in ``errors``."""

    dependencies: dict[str, Any] = field(default_factory=dict)  # name -> DependencyState
    named: Named | None = None  # the services shown by name
    alarms: list[dict] | None = None
    breakers: list[dict] | None = None
    limits: list[dict] | None = None
    queues: dict[str, int] | None = None
    workers: list[dict] | None = None  # heartbeat payloads of the live workers
    errors: dict[str, str] = field(default_factory=dict)
    read_at: float = field(default_factory=time.time)


def queue_depths(client: redis.Redis, namespace: str) -> dict[str, int]:
    """Messages waiting in each Jenga queue of a Redis broker (all priority lists)."""
    keys = RedisKeys(namespace)
    lists = {queue: keys.broker_queue_lists(queue) for queue in queue_names(namespace).values()}
    pipe = client.pipeline(transaction=False)
    for queue_lists in lists.values():
        for key in queue_lists:
            pipe.llen(key)
    sizes = iter(pipe.execute())
    return {queue: sum(next(sizes) for _ in queue_lists) for queue, queue_lists in lists.items()}


def _read_alarms(client: redis.Redis, settings) -> list[dict]:
    from common.alarms.store import AlarmStore

    return AlarmStore.for_settings(client, settings).active()


def breakers_to_read(named: Named, alarms: list[dict] | None, most: int) -> list[str]:
    """The breakers the views show: every service shown by name, then those with an open
    alarm (newest first), at most ``most`` of these (a pure function)."""
    shown = named.services
    known = set(shown)
    alarmed = sorted(
        (a for a in alarms or [] if str(a.get("id", "")).startswith(BREAKER_ALARM)),
        key=lambda a: -float(a.get("set_at") or 0),
    )
    extra = []
    for alarm in alarmed:
        name = alarm["id"][len(BREAKER_ALARM) :]
        if name not in known and len(extra) < most:
            known.add(name)
            extra.append(name)
    return [*shown, *extra]


def _read_breakers(client: redis.Redis, namespace: str, names: list[str]) -> list[dict]:
    from common.guards.breaker.store import BreakerStore

    keys = RedisKeys(namespace)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(keys.breaker(name))
    exists = pipe.execute() if names else []
    store = BreakerStore(client, namespace)
    return [store.read(name) for name, found in zip(names, exists, strict=True) if found]


def _read_limits(client: redis.Redis, namespace: str, services: list[str]) -> list[dict]:
    from common.guards.limit.store import LimitStore

    store = LimitStore(client, namespace)
    views = (store.read(service) for service in services)
    return [view for view in views if view is not None]


def read_fleet(app: FastAPI) -> FleetView:
    """Read every section of the operators' view; one failing section never hides the others."""
    state = app.state
    settings = state.settings
    namespace = settings.jenga_namespace
    view = FleetView()
    dependencies = getattr(state, "dependencies", None)
    view.dependencies = dependencies.snapshot() if dependencies is not None else {}
    redis_down = "redis" in view.dependencies and view.dependencies["redis"].state == "down"
    most = settings.metrics_max_services

    def breakers() -> list[dict]:
        names = breakers_to_read(_named(), view.alarms, most)
        return _read_breakers(state.redis, namespace, names)

    def _named() -> Named:
        if view.named is None:
            view.named = read_named(state.redis, namespace)
        return view.named

    readers = {
        "alarms": lambda: _read_alarms(state.redis, settings),
        "breakers": breakers,
        "limits": lambda: _read_limits(state.redis, namespace, _named().services),
        "workers": lambda: read_heartbeats(state.redis, namespace),
    }
    broker = getattr(state, "broker_redis", None)
    if broker is not None:
        readers["queues"] = lambda: queue_depths(broker, namespace)
    for name, read in readers.items():
        if redis_down and name != "queues":
            # The monitor already knows Redis is gone: don't make the page wait for a timeout.
            view.errors[name] = REDIS_DOWN
            continue
        try:
            setattr(view, name, read())
        except (redis.RedisError, OSError) as error:
            view.errors[name] = describe_error(error)
    if view.limits:
        FleetMetrics(state.redis, namespace).sample_limits(view.limits, view.read_at)
    return view


def state_families(view: FleetView) -> Iterator[Metric]:
    """Prometheus families for a :class:`FleetView` (a pure function)."""
    up = GaugeMetricFamily(
        "jenga_dependency_up",
        "1 when this API process reaches the dependency.",
        labels=["dependency"],
    )
    state = GaugeMetricFamily(
        "jenga_dependency_state",
        "1 for the dependency's current state.",
        labels=["dependency", "state"],
    )
    latency = GaugeMetricFamily(
        "jenga_dependency_check_latency_seconds",
        "Duration of the last check of the dependency.",
        labels=["dependency"],
    )
    for name, dep in view.dependencies.items():
        up.add_metric([name], 1.0 if dep.state == "up" else 0.0)
        for value in DEPENDENCY_STATES:
            state.add_metric([name, value], 1.0 if dep.state == value else 0.0)
        if dep.latency_seconds is not None:
            latency.add_metric([name], dep.latency_seconds)
    yield from (up, state, latency)

    if view.alarms is not None:
        active = GaugeMetricFamily(
            "jenga_alarms_active", "Open alarms by severity.", labels=["severity"]
        )
        for severity in ("critical", "warning", "info"):
            active.add_metric(
                [severity], sum(1 for a in view.alarms if a.get("severity") == severity)
            )
        yield active
        alarm = GaugeMetricFamily(
            "jenga_alarm_active_seconds", "Age of each open alarm.", labels=["alarm_id", "severity"]
        )
        ages: dict[tuple[str, str], float] = {}
        for a in view.alarms:
            key = (_alarm_label(a["id"], view.named), a.get("severity", ""))
            age = max(0.0, view.read_at - float(a.get("set_at", 0)))
            ages[key] = max(age, ages.get(key, 0.0))  # "breaker:other": the oldest
        for (alarm_id, severity), age in ages.items():
            alarm.add_metric([alarm_id, severity], age)
        yield alarm

    if view.breakers is not None:
        bstate = GaugeMetricFamily(
            "jenga_breaker_state",
            "1 for the circuit breaker's current state.",
            labels=["breaker", "state"],
        )
        trips = CounterMetricFamily(
            "jenga_breaker_trips",
            "Times the breaker opened (closed or half-open to open).",
            labels=["breaker"],
        )
        failures = GaugeMetricFamily(
            "jenga_breaker_window_failures",
            "Failed calls in the breaker's sliding window.",
            labels=["breaker"],
        )
        rows: dict[str, list[float]] = {}  # label -> a count per state, trips, failures
        for b in view.breakers:
            row = rows.setdefault(_label(b["name"], view.named), [0.0] * 5)
            for i, value in enumerate(BREAKER_STATES):
                row[i] += 1.0 if b["state"] == value else 0.0
            row[3] += float(b.get("total_trips", 0))
            row[4] += float(b.get("window", {}).get("failures", 0))
        for name, row in rows.items():
            for i, value in enumerate(BREAKER_STATES):
                bstate.add_metric([name, value], row[i])
            trips.add_metric([name], row[3])
            failures.add_metric([name], row[4])
        yield from (bstate, trips, failures)

    if view.limits is not None:
        limit = GaugeMetricFamily(
            "jenga_limit", "Fleet-wide AIMD concurrency limit of the service.", labels=["service"]
        )
        in_flight = GaugeMetricFamily(
            "jenga_limit_in_flight",
            "Calls to the service in flight, whole fleet.",
            labels=["service"],
        )
        for row in view.limits:
            if _label(row["service"], view.named) == OTHER:
                continue  # only the services shown by name are read; a sum would mean nothing
            limit.add_metric([row["service"]], float(row["limit"]))
            in_flight.add_metric([row["service"]], float(row["in_flight"]))
        yield from (limit, in_flight)

    if view.queues is not None:
        depth = GaugeMetricFamily(
            "jenga_queue_depth",
            "Messages waiting in the Celery queue (Redis broker).",
            labels=["queue"],
        )
        for queue, size in view.queues.items():
            depth.add_metric([queue], float(size))
        yield depth

    if view.workers is not None:
        workers = GaugeMetricFamily(
            "jenga_workers",
            "Workers with a fresh heartbeat, by broker connection.",
            labels=["consumer_connected"],
        )
        connected = sum(1 for w in view.workers if w.get("consumer_connected"))
        workers.add_metric(["true"], float(connected))
        workers.add_metric(["false"], float(len(view.workers) - connected))
        yield workers

    source = GaugeMetricFamily(
        "jenga_metrics_source_up", "1 when the scrape could read this source.", labels=["source"]
    )
    for name in ("alarms", "breakers", "limits", "queues", "workers", "fleet"):
        if name in view.errors:
            source.add_metric([name], 0.0)
        elif name == "fleet" or getattr(view, name) is not None:
            source.add_metric([name], 1.0)
    yield source


def _label(service: str, named: Named | None) -> str:
    return service if named is None else named.label(service)


def _alarm_label(alarm_id: str, named: Named | None) -> str:
    if alarm_id.startswith(BREAKER_ALARM):
        name = alarm_id[len(BREAKER_ALARM) :]
        if is_receiver(name) and _label(name, named) == OTHER:
            return BREAKER_ALARM + OTHER
    return alarm_id


async def startup(app: FastAPI) -> None:
    settings = app.state.settings
    broker_url = settings.effective_broker_url
    if broker_url == settings.redis_url:
        app.state.broker_redis = app.state.redis
    elif is_redis_broker(broker_url):
        app.state.broker_redis = make_redis(broker_url, settings.check_timeout_seconds)
    else:
        app.state.broker_redis = None  # RabbitMQ: queue depth is on its own management API


async def shutdown(app: FastAPI) -> None:
    broker = getattr(app.state, "broker_redis", None)
    if broker is not None and broker is not app.state.redis:
        broker.close()


# PlainTextResponse documents text/plain; the answer is Prometheus' own text/plain; version=...
@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text format: fleet counters from Redis plus current-state gauges."""
    app = request.app
    view = read_fleet(app)
    families: list[Metric] = []
    if view.errors.get("alarms") == REDIS_DOWN:
        view.errors["fleet"] = REDIS_DOWN
    else:
        try:
            families += FleetCollector(
                app.state.redis, app.state.settings.jenga_namespace
            ).collect()
        except (redis.RedisError, OSError) as error:
            view.errors["fleet"] = describe_error(error)
            log_event(
                log,
                "metrics.source_unavailable",
                logging.WARNING,
                source="fleet",
                error=view.errors["fleet"],
            )
    families += state_families(view)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return Response(
        generate_latest(registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )


class _Families:
    """A collector over families already read (the registry's interface is a ``collect()``)."""

    def __init__(self, families: list[Metric]):
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
