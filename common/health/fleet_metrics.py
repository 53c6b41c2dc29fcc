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

**End to end, by application.** A delivered delivery is also observed once in
``jenga_delivery_end_to_end_seconds`` (:meth:`FleetMetrics.record_end_to_end`), from
its message's creation to the successful attempt's end, by application. Applications
are bounded the same way as receivers, by the same ranking (a separate roster,
:data:`~common.health.named_services.APPLICATIONS`): the ``METRICS_MAX_APPLICATIONS``
that delivered most over this and the last ranking period keep their ``application``
label, every other one is observed under ``other``. A fixed "first N" would keep the
first applications created for ever; the ranking follows where the traffic is, and an
application that loses its name ends its series as a receiver does.

Redis keys (:mod:`common.redis.keys`): ``RedisKeys.metric`` (a hash per metric,
its fields laid out in :mod:`common.health.metric_specs`),
``history`` (a hash per service and minute), and the named services' keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import redis

from common.connections.probes import describe_error
from common.health.fleet_collector import FleetCollector, families
from common.health.metric_specs import (
    DELIVERIES,
    DELIVERY_DURATION,
    DROPPED,
    END_TO_END,
    HISTORY_MINUTES,
    HISTORY_TTL_SECONDS,
    METRICS,
    SUCCESS_OUTCOMES,
    MetricSpec,
    bucket_for,
    label_field,
    label_value,
    minute_of,
    relabelled,
    with_label,
)
from common.health.named_services import (
    APPLICATIONS,
    OTHER,
    SERVICES,
    NamedServices,
    Ranking,
    read_named,
)
from common.redis.keys import RedisKeys
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from common.support.per_process import PerProcess

__all__ = [
    "DELIVERIES",
    "DELIVERY_DURATION",
    "DROPPED",
    "END_TO_END",
    "HISTORY_MINUTES",
    "HISTORY_TTL_SECONDS",
    "METRICS",
    "FleetCollector",
    "FleetMetrics",
    "MetricSpec",
    "bucket_for",
    "default_metrics",
    "families",
    "minute_of",
    "record_delivery",
    "record_end_to_end",
]

log = logging.getLogger("jenga.metrics")


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
        max_applications: int = 20,
    ):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.named = NamedServices(client, namespace, max_services, clock, SERVICES)
        self.applications = NamedServices(client, namespace, max_applications, clock, APPLICATIONS)
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
        label = self._label(self.named, service)

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

    def record_end_to_end(self, application: str, seconds: float) -> None:
        """One delivered delivery, ``seconds`` after its message was created: the
        end-to-end histogram, under the application's id if it is among the busiest,
        else under ``other``."""
        label = self._label(self.applications, application)

        def write(pipe) -> None:
            self._observe(pipe, END_TO_END.name, {"application": label}, seconds)
            self.applications.note(pipe, application)

        self._write(write)

    def _label(self, names: NamedServices, value: str) -> str:
        """The label to record ``value`` (a service, an application) under; refreshes the
        names (and ranks a new period) when due. Never raises: with Redis in trouble, the
        last names read."""
        if self._clock() >= self._retry_at:
            try:
                ranking = names.refresh()
                if ranking is not None:
                    self.apply_ranking(ranking)
                return names.label(value)
            except (redis.RedisError, OSError):
                pass  # the write that follows fails too, and starts the backoff
        return names.cached_label(value)

    def apply_ranking(self, ranking: Ranking) -> None:
        """Write ``ranking``, and in the same transaction end the series of the receivers
        (or applications) ranked out and move leftovers (recorded under a name already
        lost) to ``other``."""
        label = ranking.roster.label
        names = self.applications if ranking.roster is APPLICATIONS else self.named
        specs = with_label(METRICS, label)
        pipe = self.client.pipeline(transaction=False)
        for spec in specs:
            pipe.hgetall(self.keys.metric(spec.name))
        raws = pipe.execute()
        pipe = self.client.pipeline(transaction=True)
        names.write_ranking(pipe, ranking)
        for spec, raw in zip(specs, raws, strict=True):
            key = self.keys.metric(spec.name)
            for field, value in raw.items():
                fate = ranking.fate(label_value(spec, field, label))
                if fate == "keep":
                    continue
                if fate == "fold":
                    other = relabelled(spec, field, lambda _: OTHER, label)
                    if field.endswith("|sum"):
                        pipe.hincrbyfloat(key, other, float(value))
                    else:
                        pipe.hincrby(key, other, int(float(value)))
                # An increment landing between the read above and this transaction is
                # lost: only a process that has not seen the ranking yet writes there.
                pipe.hdel(key, field)
        pipe.execute()
        names.adopted(ranking)

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
        pipe.hincrby(self.keys.metric(name), label_field(spec, labels), int(n))

    def _observe(self, pipe, name: str, labels: Mapping[str, str], seconds: float) -> None:
        spec = METRICS[name]
        field = label_field(spec, labels)
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
        max_applications=settings.metrics_max_applications,
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


def record_end_to_end(application: str, seconds: float) -> None:
    """Observe one delivered delivery's time from its message's creation
    (``jenga_delivery_end_to_end_seconds``, by application). Never raises."""
    try:
        default_metrics().record_end_to_end(application, seconds)
    except Exception:  # e.g. settings unreadable: metrics must never fail a delivery
        log.exception("end-to-end metric not recorded")
