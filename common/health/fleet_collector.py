"""Level 2: the fleet-wide counters and histograms read back from Redis, for ``/metrics``.

:class:`FleetCollector` is a prometheus-client collector; :func:`families` turns one
metric's hash into its Prometheus family (see :mod:`common.health.fleet_metrics`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import redis
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from common.health.metric_specs import METRICS, MetricSpec, relabelled
from common.health.named_services import APPLICATIONS, SERVICES, Named
from common.redis.keys import RedisKeys

__all__ = ["FleetCollector", "families"]


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
        for roster in (SERVICES, APPLICATIONS):
            pipe.zrange(roster.named_key(self.keys), 0, -1)
        *raws, services, applications = pipe.execute()
        named = {
            SERVICES.label: Named(tuple(services), frozenset()),
            APPLICATIONS.label: Named(tuple(applications), frozenset(), APPLICATIONS.ranked),
        }
        for spec, raw in zip(METRICS.values(), raws, strict=True):
            yield families(spec, raw, named)


def families(
    spec: MetricSpec, raw: Mapping[str, str], named: Mapping[str, Named] | None = None
) -> Metric:
    """The Prometheus family of one metric from its Redis hash (a pure function). With
    ``named`` (label -> the values named for it: receivers, applications), a field of any
    other value is added to ``other``."""
    for label, names in (named or {}).items():
        if label in spec.labels:
            raw = _fold_unnamed(spec, raw, names, label)
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


def _fold_unnamed(
    spec: MetricSpec, raw: Mapping[str, str], named: Named, label: str
) -> dict[str, float]:
    folded: dict[str, float] = {}
    for field, value in raw.items():
        target = relabelled(spec, field, named.label, label)
        folded[target] = folded.get(target, 0.0) + float(value)
    return folded
