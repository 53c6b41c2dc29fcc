"""Metrics and the status page stay bounded whatever the number of receivers, against
real Redis: the busiest ``METRICS_MAX_SERVICES`` receivers keep their label, the rest
are counted under ``other`` (exactly, counters never going down), a new period ranks
again, the admission script agrees with its Python rule, and one ``/metrics`` scrape
or ``/status`` load reads as many Redis keys for 30 receivers as for 120."""

from __future__ import annotations

import collections

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.operator import OperatorListener
from common.alarms.store import AlarmStore
from common.config import load_settings
from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.guards.names import webhook_service
from common.health.fleet_metrics import DELIVERIES, FleetCollector, FleetMetrics
from common.health.named_services import (
    OTHER,
    RANKING_PERIOD_SECONDS,
    REFRESH_SECONDS,
    NamedServices,
    admit,
    is_receiver,
    rank,
    read_named,
)
from common.redis.keys import RedisKeys

START = 1_700_000_400.0  # the start of a ranking period


class Clock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def receiver(i: int) -> str:
    return webhook_service(f"h{i}.wildcard.example")


def series(text: str) -> dict[str, dict[tuple, float]]:
    """Per family, ``{sorted labels (without le): value}`` of its samples
    (histograms: of their ``_count``)."""
    out: dict[str, dict[tuple, float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if family.type == "histogram" and not s.name.endswith("_count"):
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            out[family.name][labels] = s.value
    return out


def fleet_series(client, namespace) -> dict[str, dict[tuple, float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, namespace))
    return series(generate_latest(registry).decode())


def services_of(family: dict[tuple, float], label: str = "service") -> set[str]:
    return {dict(labels)[label] for labels in family}


def deliveries_by_service(got) -> dict[str, float]:
    totals: dict[str, float] = collections.defaultdict(float)
    for labels, value in got["jenga_deliveries"].items():
        totals[dict(labels)["service"]] += value
    return dict(totals)


# --- the rule -------------------------------------------------------------------


def test_a_receiver_is_what_webhook_service_names():
    assert is_receiver(webhook_service("hooks.example")) and is_receiver("webhook:[::1]:8443")
    assert not is_receiver("notify:slack") and not is_receiver(OTHER)


def test_rank_keeps_the_busiest_over_both_periods():
    tops = [{"webhook:a": 5, "webhook:b": 1}, {"webhook:b": 5, "webhook:c": 2, "webhook:d": 0}]
    assert rank(tops, 2) == {"webhook:b": 6.0, "webhook:a": 5.0}
    assert rank(tops, 10) == {"webhook:b": 6.0, "webhook:a": 5.0, "webhook:c": 2.0}
    tied = [{"webhook:a": 1, "webhook:z": 1}]
    assert rank(tied, 1) == {"webhook:a": 1.0}
    assert rank(tied, 1, frozenset({"webhook:z"})) == {"webhook:z": 1.0}  # named: keeps it


def test_an_equally_busy_newcomer_does_not_take_a_name(redis_client, namespace):
    """Ties keep the names (no churn of series among receivers equally busy)."""
    clock = Clock()
    metrics = FleetMetrics(redis_client, namespace, clock=clock, max_services=1)
    for i in (9, 0, 1):  # 9 comes first: named; 0 and 1 sort before it
        metrics.record_delivery("delivered", 0.02, receiver(i))
    clock.now += RANKING_PERIOD_SECONDS
    metrics.record_delivery("delivered", 0.02, receiver(5))
    assert read_named(redis_client, namespace).receivers == (receiver(9),)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    most=st.integers(1, 4),
    calls=st.lists(st.sampled_from([f"webhook:s{i}" for i in range(6)]), max_size=12),
)
def test_admission_script_agrees_with_its_python_rule(redis_client, namespace, most, calls):
    named_key = RedisKeys(namespace).named_services()
    redis_client.delete(named_key)
    script = NamedServices(redis_client, namespace, most)._admit
    model: frozenset[str] = frozenset()
    for service in calls:
        allowed, model = admit(model, service, most)
        got_allowed, got_count = script(keys=[named_key], args=[service, most])
        assert (bool(int(got_allowed)), int(got_count)) == (allowed, len(model))
    assert set(redis_client.zrange(named_key, 0, -1)) == model


# --- recording --------------------------------------------------------------------


def test_receivers_past_the_limit_are_counted_under_other_exactly(redis_client, namespace):
    clock = Clock()
    metrics = FleetMetrics(redis_client, namespace, clock=clock, max_services=3)
    for i in range(20):
        for _ in range(i + 1):
            metrics.record_delivery("delivered", 0.02, receiver(i))
    metrics.record_delivery("probe", 0.001, "probe:smoke")  # not a receiver: its own label
    got = fleet_series(redis_client, namespace)
    named = {receiver(0), receiver(1), receiver(2)}  # the first three while there was room
    assert services_of(got["jenga_deliveries"]) == named | {OTHER, "probe:smoke"}
    assert services_of(got["jenga_delivery_duration_seconds"]) == named | {OTHER, "probe:smoke"}
    totals = deliveries_by_service(got)
    assert totals[OTHER] == sum(range(4, 21))  # every attempt counted, once
    assert sum(totals.values()) == sum(range(1, 21)) + 1
    history = metrics.history(now=clock.now)
    assert set(history) == named | {OTHER, "probe:smoke"}
    assert sum(p["deliveries"] for p in history[OTHER]) == sum(range(4, 21))


def test_a_new_period_names_the_busiest_and_other_never_goes_down(redis_client, namespace):
    clock = Clock()
    metrics = FleetMetrics(redis_client, namespace, clock=clock, max_services=2)
    for i, attempts in enumerate((1, 1, 9, 7)):  # 0 and 1 come first; 2 and 3 are busier
        for _ in range(attempts):
            metrics.record_delivery("delivered", 0.02, receiver(i))
    before = deliveries_by_service(fleet_series(redis_client, namespace))
    assert before == {receiver(0): 1, receiver(1): 1, OTHER: 16}

    clock.now += RANKING_PERIOD_SECONDS  # the first attempt of the next period ranks again
    metrics.record_delivery("delivered", 0.02, receiver(3))
    assert read_named(redis_client, namespace).receivers == (receiver(2), receiver(3))
    after = deliveries_by_service(fleet_series(redis_client, namespace))
    # 0 and 1 lost their series; 2 and 3 start from zero; other keeps what it had.
    assert after == {receiver(3): 1, OTHER: 16}


def test_leftovers_of_a_process_behind_are_shown_and_then_moved_under_other(
    redis_client, namespace
):
    clock = Clock()
    ahead = FleetMetrics(redis_client, namespace, clock=clock, max_services=1)
    behind = FleetMetrics(redis_client, namespace, clock=clock, max_services=1)
    behind.record_delivery("delivered", 0.02, receiver(0))  # named: first, while room
    for _ in range(3):
        ahead.record_delivery("delivered", 0.02, receiver(1))

    clock.now += RANKING_PERIOD_SECONDS
    ahead.record_delivery("delivered", 0.02, receiver(1))  # ranks: 1 named, 0 out
    behind.named._fetched_at = clock.now  # has not re-read the names yet (< REFRESH_SECONDS)
    behind.record_delivery("delivered", 0.02, receiver(0))  # under its old name: a leftover
    shown = deliveries_by_service(fleet_series(redis_client, namespace))
    assert shown == {receiver(1): 1, OTHER: 4}  # the leftover is shown under other

    clock.now += RANKING_PERIOD_SECONDS  # the next ranking moves it there in Redis too
    ahead.record_delivery("delivered", 0.02, receiver(1))
    raw = redis_client.hgetall(RedisKeys(namespace).metric(DELIVERIES.name))
    assert not [field for field in raw if receiver(0) in field]
    assert deliveries_by_service(fleet_series(redis_client, namespace)) == {
        receiver(1): 2,  # still the busiest: its series goes on
        OTHER: 4,  # the same as before the move
    }
    assert REFRESH_SECONDS < RANKING_PERIOD_SECONDS


# --- what /metrics and /status read ------------------------------------------------


class KeyCounter:
    """Counts the Redis keys the process reads (commands and pipelines alike)."""

    READS = {
        "GET",
        "MGET",
        "HGET",
        "HGETALL",
        "HVALS",
        "SMEMBERS",
        "ZRANGE",
        "ZREVRANGE",
        "ZCARD",
        "SCARD",
        "EXISTS",
        "LLEN",
        "XREVRANGE",
        "ZRANGEBYSCORE",
        "HMGET",
    }

    def __init__(self, monkeypatch):
        self.keys: list[str] = []
        counter = self
        execute_command = redis.Redis.execute_command
        pipeline_execute = redis.client.Pipeline.execute

        def command(client, *args, **options):
            if not isinstance(client, redis.client.Pipeline):
                counter.note(args)
            return execute_command(client, *args, **options)

        def execute(pipe, *args, **kwargs):
            for command_args, _ in pipe.command_stack:
                counter.note(command_args)
            return pipeline_execute(pipe, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, "execute_command", command)
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute)

    def note(self, args) -> None:
        if args and str(args[0]).upper() in self.READS and len(args) > 1:
            self.keys.append(str(args[1]))


def populate(redis_client, namespace, receivers: range, clock: Clock) -> None:
    """Receivers used the way deliveries use them: breaker, limit, metrics; two
    breakers of unnamed receivers open with their alarm."""
    registry = BreakerRegistry(redis_client, namespace, bp.BreakerPolicy())
    metrics = FleetMetrics(redis_client, namespace, clock=clock, max_services=5)
    for i in receivers:
        service = receiver(i)
        breaker = registry.breaker(service)
        breaker.record(False, 0.01, breaker.admit())
        limit = SharedLimit(redis_client, namespace, service, AIMDOptions(), background=False)
        limit.try_acquire().release(False, 0.01)
        limit.close()
        metrics.record_delivery("delivered", 0.01, service)
    registry.flush()
    alarms = AlarmStore(redis_client, namespace)
    for i in (receivers[-1], receivers[-2]):
        alarms.set(f"breaker:{receiver(i)}", "open", severity="warning")


@pytest.mark.parametrize("path", ["/metrics", "/status"])
def test_one_load_reads_as_many_keys_for_120_receivers_as_for_30(
    settings_env, redis_client, namespace, monkeypatch, path
):
    token = "operator-token-0123456789"
    env = dict(settings_env, METRICS_MAX_SERVICES="5", JENGA_ADMIN_TOKEN=token)
    settings = load_settings(env, wait_seconds=0)
    clock = Clock()
    read: list[list[str]] = []
    with TestClient(OperatorListener(create_app(settings))) as client:
        for receivers in (range(30), range(30, 120)):
            for alarm in AlarmStore(redis_client, namespace).active():  # as many open as before
                AlarmStore(redis_client, namespace).clear(alarm["id"])
            populate(redis_client, namespace, receivers, clock)
            counter = KeyCounter(monkeypatch)
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            monkeypatch.undo()
            assert response.status_code == 200
            read.append(counter.keys)
            if path == "/metrics":
                got = series(response.text)
                for family, label in (
                    ("jenga_deliveries", "service"),
                    ("jenga_delivery_duration_seconds", "service"),
                    ("jenga_breaker_state", "breaker"),
                    ("jenga_breaker_trips", "breaker"),
                    ("jenga_breaker_window_failures", "breaker"),
                    ("jenga_limit", "service"),
                    ("jenga_limit_in_flight", "service"),
                ):
                    assert len(services_of(got[family], label)) <= 5 + 1, family
                alarm_ids = services_of(got["jenga_alarm_active_seconds"], "alarm_id")
                assert alarm_ids == {"breaker:other"}
    assert len(read[0]) == len(read[1]), (len(read[0]), len(read[1]))
    assert len(set(read[1])) <= 60 * 7 + 40  # 5 named receivers and other: an hour of history
