"""Level 2: counters and histograms recorded by any process of the fleet, added up in Redis.

The API and the workers run on different hosts, and a prefork worker is several
processes: a per-process prometheus-client registry would show one process's
share only. So worker-side metrics are recorded into Redis (``HINCRBY`` /
``HINCRBYFLOAT`` in one ``MULTI``), and the API's ``/metrics`` reads them back
with :class:`FleetCollector`. Every process's increments land in the same hash
field, so the sum is exact however many processes record.

Recording never raises into the caller: with Redis unreachable an event is
dropped and counted locally (``FleetMetrics.dropped``); the count is added to
``jenga_metrics_dropped_total`` by the next write that gets through. After a
failure Redis is left alone for a short backoff, so an outage does not cost
every delivery a connect timeout.

Besides the totals, deliveries are sampled per service and minute for the
status page's one-hour chart (``{ns}:history:{service}:{minute}``, a hash with
``deliveries``, ``failures`` and the service's AIMD ``limit``; each key expires
after :data:`HISTORY_TTL_SECONDS`).

**Bounded by the busiest.** A delivery is recorded under its receiver's name only
while that receiver is among the ``METRICS_MAX_SERVICES`` busiest
(:mod:`common.health.named_services`); otherwise under ``service="other"``, in the
counters, the histogram and the history alike. So the Redis fields, the
Prometheus series and the status page's charts are bounded whatever the number
of receivers, and every event is counted under exactly one label; no counter
goes down. A receiver ranked out loses its series (Prometheus sees it end, as
for a target that went away); one ranked in starts from zero.

Redis keys (:mod:`common.redis.keys`): ``RedisKeys.metric`` (a hash per metric,
one field per label set; histograms add ``|le=<bound>``, ``|sum``, ``|count``),
``history`` (a hash per service and minute), and the named services' keys.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from common.connections.probes import describe_error
from common.health.named_services import OTHER, Named, NamedServices, Ranking, read_named
from common.redis.keys import RedisKeys
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from common.support.per_process import PerProcess

log = logging.getLogger("jenga.metrics")

HISTORY_MINUTES = 60
HISTORY_TTL_SECONDS = (HISTORY_MINUTES + 5) * 60
# Delivery attempts take milliseconds to DELIVERY_TIMEOUT_SECONDS (15 s by default).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# Outcomes that count as a successful delivery in the status page's throughput chart.
SUCCESS_OUTCOMES = frozenset({"delivered", "success", "succeeded", "ok", "probe"})


@dataclass(frozen=True)
class MetricSpec:
    """One fleet-wide metric: its Prometheus name (without ``_total``), kind, help and labels."""

    name: str
    kind: str  # "counter" | "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


DELIVERIES = MetricSpec(
    "jenga_deliveries",
    "counter",
    "Webhook delivery attempts by outcome, whole fleet.",
    ("service", "outcome"),
)
DELIVERY_DURATION = MetricSpec(
    "jenga_delivery_duration_seconds",
    "histogram",
    "Duration of webhook delivery attempts, whole fleet.",
    ("service",),
    DURATION_BUCKETS,
)
DROPPED = MetricSpec(
    "jenga_metrics_dropped",
    "counter",
    "Metric events dropped because Redis was unreachable (reported once it is back).",
    (),
)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec for spec in (DELIVERIES, DELIVERY_DURATION, DROPPED)
}


def _label_key(spec: MetricSpec, labels: Mapping[str, str]) -> str:
    if set(labels) != set(spec.labels):
        raise ValueError(f"{spec.name} takes labels {list(spec.labels)}, got {sorted(labels)}")
    return _encode([str(labels[name]) for name in spec.labels])


def _encode(values: list[str]) -> str:
    return json.dumps(values, separators=(",", ":"))


def _split_field(spec: MetricSpec, field: str) -> tuple[list[str], str]:
    """A hash field's label values and what follows them (``|le=…``, ``|sum``, ``|count``
    for a histogram, nothing for a counter)."""
    if spec.kind == "counter":
        return json.loads(field), ""
    labels, bar, part = field.rpartition("|")
    return json.loads(labels), bar + part


def _relabelled(spec: MetricSpec, field: str, label: Callable[[str], str]) -> str:
    """``field`` with its service label replaced by ``label(service)``."""
    values, suffix = _split_field(spec, field)
    at = spec.labels.index("service")
    values[at] = label(values[at])
    return _encode(values) + suffix


def _service_of(spec: MetricSpec, field: str) -> str:
    return _split_field(spec, field)[0][spec.labels.index("service")]


def _by_service(specs: Mapping[str, MetricSpec]) -> list[MetricSpec]:
    return [spec for spec in specs.values() if "service" in spec.labels]


def bucket_for(buckets: tuple[float, ...], seconds: float) -> float | None:
    """The smallest bound ``>= seconds``; None when only ``+Inf`` holds it."""
    for bound in buckets:
        if seconds <= bound:
            return bound
    return None


def minute_of(timestamp: float) -> int:
    return int(timestamp // 60) * 60


class FleetMetrics:
    """Records fleet-wide metrics into Redis. Thread-safe; cheap to create."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        clock: Callable[[], float] = time.time,
        retry_base: float = 0.5,
        retry_cap: float = 5.0,
        max_services: int = 50,
    ):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.named = NamedServices(client, namespace, max_services, clock)
        self._clock = clock
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._lock = threading.Lock()
        self.dropped = 0  # events lost to Redis outages, not yet reported to Redis
        self._failures = 0
        self._retry_at = 0.0
        # service -> minute whose limit this process sampled
        self._limit_sampled: dict[str, int] = {}

    # --- recording ----------------------------------------------------------------
    def count(self, name: str, labels: Mapping[str, str], n: int = 1) -> None:
        """Add ``n`` to counter ``name`` for ``labels``."""
        self._write(lambda pipe: self._count(pipe, name, labels, n), events=n)

    def observe(self, name: str, labels: Mapping[str, str], seconds: float) -> None:
        """Record one observation of histogram ``name`` for ``labels``."""
        self._write(lambda pipe: self._observe(pipe, name, labels, seconds))

    def record_delivery(self, outcome: str, seconds: float, service: str) -> None:
        """One delivery attempt: counter, duration histogram and the per-minute history,
        under the service's name if it is among the busiest, else under ``other``."""
        now = self._clock()
        minute = minute_of(now)
        label = self._label(service)

        def write(pipe) -> None:
            self._count(pipe, DELIVERIES.name, {"service": label, "outcome": outcome}, 1)
            self._observe(pipe, DELIVERY_DURATION.name, {"service": label}, seconds)
            key = self.keys.history(label, minute)
            pipe.hincrby(key, "deliveries", 1)
            if outcome not in SUCCESS_OUTCOMES:
                pipe.hincrby(key, "failures", 1)
            pipe.expire(key, HISTORY_TTL_SECONDS)
            self.named.note(pipe, service)

        written = self._write(write)
        if written and label != OTHER and self._limit_sampled.get(label) != minute:
            self._limit_sampled[label] = minute
            self._write(lambda pipe: self._copy_limit(label, minute))

    def _label(self, service: str) -> str:
        """The label to record ``service`` under; refreshes the names (and ranks a new
        period) when due. Never raises: with Redis in trouble, the last names read."""
        if self._clock() >= self._retry_at:
            try:
                ranking = self.named.refresh()
                if ranking is not None:
                    self.apply_ranking(ranking)
                return self.named.label(service)
            except (redis.RedisError, OSError):
                pass  # the write that follows fails too, and starts the backoff
        return self.named.cached_label(service)

    def apply_ranking(self, ranking: Ranking) -> None:
        """Write ``ranking``, and in the same transaction end the series of the receivers
        ranked out and move leftovers (recorded under a name already lost) to ``other``."""
        specs = _by_service(METRICS)
        pipe = self.client.pipeline(transaction=False)
        for spec in specs:
            pipe.hgetall(self.keys.metric(spec.name))
        raws = pipe.execute()
        pipe = self.client.pipeline(transaction=True)
        self.named.write_ranking(pipe, ranking)
        for spec, raw in zip(specs, raws, strict=True):
            key = self.keys.metric(spec.name)
            for field, value in raw.items():
                fate = ranking.fate(_service_of(spec, field))
                if fate == "keep":
                    continue
                if fate == "fold":
                    other = _relabelled(spec, field, lambda _: OTHER)
                    if field.endswith("|sum"):
                        pipe.hincrbyfloat(key, other, float(value))
                    else:
                        pipe.hincrby(key, other, int(float(value)))
                # An increment landing between the read above and this transaction is
                # lost: only a process that has not seen the ranking yet writes there.
                pipe.hdel(key, field)
        pipe.execute()
        self.named.adopted(ranking)

    def sample_limits(self, limits: list[dict], now: float | None = None) -> None:
        """Store each service's current AIMD limit (``list_limits`` rows) in this
        minute's history."""
        minute = minute_of(self._clock() if now is None else now)

        def write(pipe) -> None:
            for row in limits:
                key = self.keys.history(row["service"], minute)
                pipe.hset(key, "limit", int(row["limit"]))
                pipe.expire(key, HISTORY_TTL_SECONDS)

        if limits:
            self._write(write)

    def _count(self, pipe, name: str, labels: Mapping[str, str], n: int) -> None:
        spec = METRICS[name]
        pipe.hincrby(self.keys.metric(name), _label_key(spec, labels), int(n))

    def _observe(self, pipe, name: str, labels: Mapping[str, str], seconds: float) -> None:
        spec = METRICS[name]
        field = _label_key(spec, labels)
        key = self.keys.metric(name)
        bound = bucket_for(spec.buckets, seconds)
        if bound is not None:
            pipe.hincrby(key, f"{field}|le={bound!r}", 1)
        pipe.hincrbyfloat(key, f"{field}|sum", float(seconds))
        pipe.hincrby(key, f"{field}|count", 1)

    def _copy_limit(self, service: str, minute: int) -> None:
        limit = self.client.hget(self.keys.limit(service), "limit")  # the AIMD state hash
        if limit is not None:
            key = self.keys.history(service, minute)
            self.client.hset(key, "limit", int(float(limit)))
            self.client.expire(key, HISTORY_TTL_SECONDS)

    def _write(self, build: Callable[[redis.client.Pipeline], None], events: int = 1) -> bool:
        """Run ``build`` in one MULTI; on any Redis trouble drop the event. True if written."""
        if self._clock() < self._retry_at:
            with self._lock:
                self.dropped += events
            return False
        try:
            with self._lock:
                dropped, self.dropped = self.dropped, 0
            pipe = self.client.pipeline(transaction=True)
            build(pipe)
            if dropped:
                pipe.hincrby(self.keys.metric(DROPPED.name), "[]", dropped)
            pipe.execute()
        except (KeyError, ValueError):
            # A programming error (unknown metric, wrong labels): say so, but never fail the task.
            log.exception("metric not recorded")
            with self._lock:
                self.dropped += dropped
            return False
        except (redis.RedisError, OSError) as error:
            with self._lock:
                self.dropped += dropped + events
                self._failures += 1
                self._retry_at = self._clock() + full_jitter_backoff(
                    self._failures - 1, self._retry_base, self._retry_cap
                )
            if self._failures == 1:
                log_event(
                    log, "metrics.redis_unreachable", logging.WARNING, error=describe_error(error)
                )
            return False
        if self._failures:
            log_event(log, "metrics.redis_back", dropped=dropped, failures=self._failures)
            self._failures = 0
        return True

    # --- reading ------------------------------------------------------------------
    def history(
        self,
        services: list[str] | None = None,
        now: float | None = None,
        minutes: int = HISTORY_MINUTES,
    ) -> dict[str, list[dict]]:
        """Per service, the last ``minutes`` minutes oldest first:
        ``{"minute", "deliveries", "failures", "limit"}``; by default of the services shown
        by name and of ``other`` (a bounded read). Raises ``redis.RedisError`` when Redis
        is unreachable."""
        if services is None:
            services = [*read_named(self.client, self.keys.namespace).services, OTHER]
        last = minute_of(self._clock() if now is None else now)
        minutes_ = [last - 60 * i for i in range(minutes - 1, -1, -1)]
        pipe = self.client.pipeline(transaction=False)
        for service in services:
            for minute in minutes_:
                pipe.hgetall(self.keys.history(service, minute))
        rows = iter(pipe.execute())
        result: dict[str, list[dict]] = {}
        for service in services:
            series = []
            for minute in minutes_:
                raw = next(rows)
                series.append(
                    {
                        "minute": minute,
                        "deliveries": int(raw.get("deliveries", 0)),
                        "failures": int(raw.get("failures", 0)),
                        "limit": int(raw["limit"]) if raw.get("limit") else None,
                    }
                )
            if any(point["deliveries"] or point["limit"] is not None for point in series):
                result[service] = series
        return result


class FleetCollector:
    """prometheus-client collector over the fleet-wide counters and histograms in Redis.
    With Redis unreachable it yields nothing (the caller reports that separately)."""

    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.keys = RedisKeys(namespace)

    def collect(self) -> Iterator[Metric]:
        # One transaction: the fields and the names as one ranking left them, so a
        # ranked-out receiver's total never shows up under "other" for one scrape.
        pipe = self.client.pipeline(transaction=True)
        for spec in METRICS.values():
            pipe.hgetall(self.keys.metric(spec.name))
        pipe.zrange(self.keys.named_services(), 0, -1)
        *raws, named = pipe.execute()
        for spec, raw in zip(METRICS.values(), raws, strict=True):
            yield families(spec, raw, frozenset(named))


def families(
    spec: MetricSpec, raw: Mapping[str, str], named: frozenset[str] | None = None
) -> Metric:
    """The Prometheus family of one metric from its Redis hash (a pure function). With
    ``named`` (the named receivers), a field of any other receiver is added to ``other``."""
    if named is not None and "service" in spec.labels:
        raw = _fold_unnamed(spec, raw, Named(tuple(named), frozenset()))
    if spec.kind == "counter":
        family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        if not spec.labels and not raw:
            family.add_metric([], 0)
        for field, value in sorted(raw.items()):
            family.add_metric(json.loads(field), float(value))
        return family
    family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
    series: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        labels, _, part = field.rpartition("|")
        series.setdefault(labels, {})[part] = float(value)
    for labels, parts in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for bound in spec.buckets:
            cumulative += parts.get(f"le={bound!r}", 0.0)
            buckets.append((_bound_text(bound), cumulative))
        buckets.append(("+Inf", parts.get("count", 0.0)))
        family.add_metric(json.loads(labels), buckets, parts.get("sum", 0.0))
    return family


def _bound_text(bound: float) -> str:
    return repr(float(bound))


def _fold_unnamed(spec: MetricSpec, raw: Mapping[str, str], named: Named) -> dict[str, float]:
    folded: dict[str, float] = {}
    for field, value in raw.items():
        target = _relabelled(spec, field, named.label)
        folded[target] = folded.get(target, 0.0) + float(value)
    return folded


# --- the process's recorder, for tasks -------------------------------------------


def _metrics_from_settings() -> FleetMetrics:
    from common.config import get_settings
    from common.redis.client import redis_for

    settings = get_settings()
    return FleetMetrics(
        redis_for(settings),
        settings.jenga_namespace,
        retry_base=settings.reconnect_base_seconds,
        retry_cap=settings.reconnect_cap_seconds,
        max_services=settings.metrics_max_services,
    )


_default: PerProcess[FleetMetrics] = PerProcess(_metrics_from_settings)


def default_metrics() -> FleetMetrics:
    """This process's recorder, built from the settings on first use (again after a fork)."""
    return _default.get()


def record_delivery(outcome: str, seconds: float, service: str) -> None:
    """Count one delivery attempt fleet-wide (``jenga_deliveries_total``,
    ``jenga_delivery_duration_seconds``, the status page's chart). Never raises."""
    try:
        default_metrics().record_delivery(outcome, seconds, service)
    except Exception:  # e.g. settings unreadable: metrics must never fail a delivery
        log.exception("delivery metric not recorded")
