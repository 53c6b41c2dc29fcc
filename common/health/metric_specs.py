"""Level 2: the fleet-wide metrics and how their Redis hash fields are laid out.

A hash per metric (``RedisKeys.metric``), one field per label set: the label values
as a JSON list; a histogram adds ``|le=<bound>``, ``|sum`` and ``|count``. Written by
:class:`common.health.fleet_metrics.FleetMetrics`, read by
:class:`common.health.fleet_collector.FleetCollector`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "DELIVERIES",
    "DELIVERY_DURATION",
    "DROPPED",
    "DURATION_BUCKETS",
    "END_TO_END",
    "END_TO_END_BUCKETS",
    "HISTORY_MINUTES",
    "HISTORY_TTL_SECONDS",
    "METRICS",
    "SUCCESS_OUTCOMES",
    "MetricSpec",
    "bucket_for",
    "label_field",
    "label_value",
    "minute_of",
    "relabelled",
    "with_label",
]

HISTORY_MINUTES = 60
HISTORY_TTL_SECONDS = (HISTORY_MINUTES + 5) * 60
# Delivery attempts take milliseconds to DELIVERY_TIMEOUT_SECONDS (15 s by default).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# A message created to delivered: a first attempt takes 50 ms to a few seconds; each retry
# of DELIVERY_RETRY_SCHEDULE (5s, 5m, 30m, 2h, 5h, 10h, 10h) lands in a later bucket,
# up to a day (later ones, after a long pause or a recover, count in +Inf only).
END_TO_END_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0,
    3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0,
)  # fmt: skip
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
END_TO_END = MetricSpec(
    "jenga_delivery_end_to_end_seconds",
    "histogram",
    "From a message's creation to its delivery to one endpoint (retries included), by"
    " application (the busiest by name, the rest as other), whole fleet.",
    ("application",),
    END_TO_END_BUCKETS,
)
DROPPED = MetricSpec(
    "jenga_metrics_dropped",
    "counter",
    "Metric events dropped because Redis was unreachable (reported once it is back).",
    (),
)

METRICS: dict[str, MetricSpec] = {
    spec.name: spec for spec in (DELIVERIES, DELIVERY_DURATION, END_TO_END, DROPPED)
}


def label_field(spec: MetricSpec, labels: Mapping[str, str]) -> str:
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


def relabelled(
    spec: MetricSpec, field: str, label: Callable[[str], str], name: str = "service"
) -> str:
    """``field`` with its label ``name`` (a service, an application) replaced by
    ``label(value)``."""
    values, suffix = _split_field(spec, field)
    at = spec.labels.index(name)
    values[at] = label(values[at])
    return _encode(values) + suffix


def label_value(spec: MetricSpec, field: str, name: str = "service") -> str:
    """The value of label ``name`` in ``field``."""
    return _split_field(spec, field)[0][spec.labels.index(name)]


def with_label(specs: Mapping[str, MetricSpec], name: str = "service") -> list[MetricSpec]:
    """The metrics that have label ``name``."""
    return [spec for spec in specs.values() if name in spec.labels]


def bucket_for(buckets: tuple[float, ...], seconds: float) -> float | None:
    """The smallest bound ``>= seconds``; None when only ``+Inf`` holds it."""
    for bound in buckets:
        if seconds <= bound:
            return bound
    return None


def minute_of(timestamp: float) -> int:
    return int(timestamp // 60) * 60
