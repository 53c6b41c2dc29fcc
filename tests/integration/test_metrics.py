"""Fleet-wide metrics: counters and histograms added up in Redis by any number
of processes, recording that survives a dead Redis, and ``GET /metrics`` with
the current state (dependencies, alarms, breakers, limits, queue depth)."""

from __future__ import annotations

import uuid

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.operator import OperatorListener
from common.alarms.store import AlarmStore
from common.guards.breaker.registry import policy_from_settings
from common.guards.breaker.store import BreakerStore
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.health.fleet_metrics import (
    DELIVERIES,
    DELIVERY_DURATION,
    FleetMetrics,
    bucket_for,
    families,
    minute_of,
)
from common.redis.client import make_redis
from common.redis.keys import RedisKeys
from tests.support.servers import JengaProcess, jenga_env, wait_for


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def exposition(redis_client, namespace) -> dict:
    from prometheus_client import CollectorRegistry, generate_latest

    from common.health.fleet_metrics import FleetCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(redis_client, namespace))
    return samples(generate_latest(registry).decode())


def test_bucket_for_picks_the_smallest_bound_that_holds_the_value():
    assert bucket_for((0.1, 1.0), 0.1) == 0.1
    assert bucket_for((0.1, 1.0), 0.2) == 1.0
    assert bucket_for((0.1, 1.0), 3.0) is None


def test_counters_and_histograms_add_up_in_redis(redis_client, redis_url, namespace):
    a = FleetMetrics(redis_client, namespace)
    b = FleetMetrics(make_redis(redis_url, 1), namespace)  # a second client: another process's view
    a.count(DELIVERIES.name, {"service": "s1", "outcome": "delivered"}, 3)
    b.count(DELIVERIES.name, {"service": "s1", "outcome": "delivered"})
    b.count(DELIVERIES.name, {"service": "s1", "outcome": "failed"}, 2)
    for seconds in (0.003, 0.2, 0.2, 99.0):
        a.observe(DELIVERY_DURATION.name, {"service": "s1"}, seconds)
    got = exposition(redis_client, namespace)
    assert got[("jenga_deliveries_total", (("outcome", "delivered"), ("service", "s1")))] == 4
    assert got[("jenga_deliveries_total", (("outcome", "failed"), ("service", "s1")))] == 2
    bucket = "jenga_delivery_duration_seconds_bucket"
    assert got[(bucket, (("le", "0.005"), ("service", "s1")))] == 1
    assert got[(bucket, (("le", "0.1"), ("service", "s1")))] == 1
    assert got[(bucket, (("le", "0.25"), ("service", "s1")))] == 3
    assert got[(bucket, (("le", "30.0"), ("service", "s1")))] == 3
    assert got[(bucket, (("le", "+Inf"), ("service", "s1")))] == 4
    assert got[("jenga_delivery_duration_seconds_count", (("service", "s1"),))] == 4
    assert got[("jenga_delivery_duration_seconds_sum", (("service", "s1"),))] == pytest.approx(
        99.403
    )
    assert got[("jenga_metrics_dropped_total", ())] == 0


def test_wrong_labels_are_refused_without_raising(redis_client, namespace, caplog):
    metrics = FleetMetrics(redis_client, namespace)
    metrics.count(DELIVERIES.name, {"service": "s1"})  # outcome missing
    metrics.count("jenga_no_such_metric", {})
    assert "metric not recorded" in caplog.text
    assert redis_client.hgetall(metrics.keys.metric(DELIVERIES.name)) == {}


def test_families_from_an_empty_hash_expose_nothing_but_a_zero_drop_count():
    assert list(families(DELIVERIES, {}).samples) == []
    assert list(families(DELIVERY_DURATION, {}).samples) == []


def test_redis_down_drops_and_counts_then_reports_the_drops(redis_server, namespace):
    clock = Clock()
    client = make_redis(redis_server.url, 0.5)
    metrics = FleetMetrics(client, namespace, clock=clock, retry_base=1.0, retry_cap=1.0)
    metrics.record_delivery("delivered", 0.1, "svc")
    redis_server.stop()
    for _ in range(5):
        metrics.record_delivery("delivered", 0.1, "svc")  # must not raise
        clock.now += 0.01
    assert metrics.dropped == 5
    redis_server.start()
    clock.now += 2  # past the backoff
    metrics.record_delivery("delivered", 0.1, "svc")
    assert metrics.dropped == 0
    got = exposition(client, namespace)
    # The throwaway server restarts empty: only the write after the restart is there.
    assert got[("jenga_deliveries_total", (("outcome", "delivered"), ("service", "svc")))] == 1
    assert got[("jenga_metrics_dropped_total", ())] == 5
    client.close()


def test_history_keeps_throughput_failures_and_limit_per_minute(redis_client, namespace):
    clock = Clock(1_700_000_000.0)
    metrics = FleetMetrics(redis_client, namespace, clock=clock)
    limits_key = RedisKeys(namespace).limit("hooks.example")
    redis_client.hset(limits_key, "limit", 7)
    for outcome in ("delivered", "delivered", "failed"):
        metrics.record_delivery(outcome, 0.05, "hooks.example")
    clock.now += 120
    redis_client.hset(limits_key, "limit", 9)
    metrics.record_delivery("delivered", 0.05, "hooks.example")
    history = metrics.history()
    series = history["hooks.example"]
    assert len(series) == 60 and series[-1]["minute"] == minute_of(clock.now)
    assert (series[-3]["deliveries"], series[-3]["failures"], series[-3]["limit"]) == (3, 1, 7)
    assert series[-2] == {
        "minute": minute_of(clock.now) - 60,
        "deliveries": 0,
        "failures": 0,
        "limit": None,
    }
    assert (series[-1]["deliveries"], series[-1]["limit"]) == (1, 9)
    ttl = redis_client.ttl(metrics.keys.history("hooks.example", minute_of(clock.now)))
    assert 3600 < ttl <= 3900


def test_metrics_endpoint_shows_state_and_fleet_counters(settings, redis_client, namespace):
    AlarmStore(redis_client, namespace).set(
        "postgres", "PostgreSQL unreachable", severity="critical"
    )
    BreakerStore(redis_client, namespace).force(
        "hooks.example", "open", policy_from_settings(settings)
    )
    limit = SharedLimit(
        redis_client,
        namespace,
        "hooks.example",
        AIMDOptions(initial=6, min=1, max=10),
        background=False,
    )
    lease = limit.try_acquire()
    FleetMetrics(redis_client, namespace).record_delivery("delivered", 0.02, "hooks.example")
    sender = Celery("t", broker=settings.redis_url, set_as_current=False)
    sender.conf.broker_transport_options = {
        "global_keyprefix": RedisKeys(namespace).broker_prefix()
    }
    for priority in (0, 9):  # kombu keeps priorities in separate lists; both count
        sender.send_task(
            "jenga.selftest", args=["x"], queue=f"{namespace}.default", priority=priority
        )

    with TestClient(OperatorListener(create_app(settings))) as client:
        wait_for(
            lambda: all(
                f'jenga_dependency_up{{dependency="{name}"}} 1.0' in text
                for text in [client.get("/metrics").text]
                for name in ("postgres", "redis", "broker")
            ),
            15,
            what="every dependency up in /metrics",
        )
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("jenga_alarms_active", (("severity", "critical"),))] == 1
    assert (
        "jenga_alarm_active_seconds",
        (("alarm_id", "postgres"), ("severity", "critical")),
    ) in got
    assert got[("jenga_breaker_state", (("breaker", "hooks.example"), ("state", "open")))] == 1
    assert got[("jenga_breaker_state", (("breaker", "hooks.example"), ("state", "closed")))] == 0
    assert got[("jenga_limit", (("service", "hooks.example"),))] == 6
    assert got[("jenga_limit_in_flight", (("service", "hooks.example"),))] == 1
    assert got[("jenga_queue_depth", (("queue", f"{namespace}.default"),))] == 2
    assert got[("jenga_queue_depth", (("queue", f"{namespace}.deliveries"),))] == 0
    assert (
        got[("jenga_deliveries_total", (("outcome", "delivered"), ("service", "hooks.example")))]
        == 1
    )
    assert got[("jenga_metrics_source_up", (("source", "fleet"),))] == 1
    assert ("jenga_dependency_check_latency_seconds", (("dependency", "postgres"),)) in got
    lease.release()
    limit.close()
    sender.close()


def test_metrics_endpoint_answers_with_redis_down(settings_env, redis_server, namespace):
    from common.config import load_settings

    settings = load_settings(
        dict(
            settings_env,
            REDIS_URL=redis_server.url,
            BROKER_URL=redis_server.url,
            CHECK_INTERVAL_SECONDS="0.2",
            CHECK_TIMEOUT_SECONDS="0.5",
        ),
        wait_seconds=0,
    )
    redis_server.stop()
    with TestClient(OperatorListener(create_app(settings))) as client:
        wait_for(
            lambda: (
                'jenga_dependency_state{dependency="redis",state="down"} 1.0'
                in client.get("/metrics").text
            ),
            15,
            what="redis down in /metrics",
        )
        response = client.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    assert got[("jenga_dependency_up", (("dependency", "redis"),))] == 0
    assert got[("jenga_metrics_source_up", (("source", "alarms"),))] == 0
    assert got[("jenga_metrics_source_up", (("source", "fleet"),))] == 0


@pytest.mark.slow
def test_four_prefork_processes_add_up_exactly(settings, settings_env, redis_client, namespace):
    """40 tasks x 25 events on ``-P prefork -c 4``: /metrics shows exactly 1000."""
    tasks, per_task = 40, 25
    service, token = f"probe:{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "prefork",
        "-c",
        "4",
        "-Q",
        f"{namespace}.default",
        "--without-mingle",
        "--without-gossip",
        "-n",
        f"probe-{namespace}@%h",
        env=jenga_env(**settings_env),
        name="worker-prefork",
    ).start()
    sender = Celery("t", broker=settings.redis_url, set_as_current=False)
    sender.conf.broker_transport_options = {
        "global_keyprefix": RedisKeys(namespace).broker_prefix()
    }
    try:
        worker.wait_for_output("ready", 60)
        for _ in range(tasks):
            sender.send_task(
                "jenga.metrics.probe", args=[token, per_task, service], queue=f"{namespace}.default"
            )
        key = ("jenga_deliveries_total", (("outcome", "probe"), ("service", service)))
        with TestClient(OperatorListener(create_app(settings))) as client:
            wait_for(
                lambda: (
                    samples(client.get("/metrics").text).get(key) == tasks * per_task
                    and redis_client.llen(RedisKeys(namespace).broker_queue(f"{namespace}.default"))
                    == 0
                ),
                90,
                interval=0.5,
                what="all probe events counted",
            )
            # Every task also marks its process: the count must not be a single process's.
            processes = redis_client.smembers(RedisKeys(namespace).metrics_probe(token))
            got = samples(client.get("/metrics").text)
        assert got[key] == tasks * per_task
        assert (
            got[("jenga_delivery_duration_seconds_count", (("service", service),))]
            == tasks * per_task
        )
        assert len(processes) >= 2, processes
    finally:
        sender.close()
        worker.stop()
