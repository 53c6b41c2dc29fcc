"""``jenga_delivery_end_to_end_seconds`` against real Redis and the API's ``/metrics``:
an observation shows under its application, the applications past
``METRICS_MAX_APPLICATIONS`` are shown under ``other`` (every observation counted once),
a new ranking period names the busiest and ends the series of the one ranked out; and
``CLAIM_ONE`` hands the worker the message's application and both times it needs, by
PostgreSQL's clock."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.rows import dict_row

from common.health.fleet_metrics import FleetMetrics
from common.health.named_services import OTHER, RANKING_PERIOD_SECONDS
from common.redis.keys import RedisKeys
from tests.support.api import ADMIN
from tests.support.message_rows import insert_delivery
from worker.delivery.queries import CLAIM_ONE

FAMILY = "jenga_delivery_end_to_end_seconds"
START = 1_700_000_400.0  # the start of a ranking period


class Clock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def end_to_end(client) -> dict[str, dict[str, float]]:
    """Per application, its ``count``, ``sum`` and buckets (``le=…``) as /metrics shows them."""
    response = client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name != FAMILY:
            continue
        for s in family.samples:
            parts = out.setdefault(s.labels["application"], {})
            if s.name.endswith("_bucket"):
                parts[f"le={s.labels['le']}"] = s.value
            else:
                parts[s.name.rpartition("_")[2]] = s.value
    return out


def test_an_observation_shows_under_its_application(client, redis_client, namespace):
    metrics = FleetMetrics(redis_client, namespace, clock=Clock(), max_applications=2)
    metrics.record_end_to_end("app_shop", 0.3)
    metrics.record_end_to_end("app_shop", 400.0)  # delivered at a retry, minutes later
    got = end_to_end(client)["app_shop"]
    assert (got["count"], got["sum"]) == (2.0, 400.3)
    assert (got["le=0.25"], got["le=0.5"], got["le=300.0"], got["le=900.0"]) == (0, 1, 1, 2)
    assert got["le=+Inf"] == 2.0


def test_the_application_past_the_limit_is_shown_under_other(client, redis_client, namespace):
    metrics = FleetMetrics(redis_client, namespace, clock=Clock(), max_applications=2)
    for app, times in (("app_a", 1), ("app_b", 2), ("app_c", 3), ("app_d", 4)):
        for _ in range(times):
            metrics.record_end_to_end(app, 1.0)
    got = end_to_end(client)
    # Named while there was room: the first two; the third and fourth are other.
    assert set(got) == {"app_a", "app_b", OTHER}
    assert {app: parts["count"] for app, parts in got.items()} == {
        "app_a": 1.0,
        "app_b": 2.0,
        OTHER: 7.0,
    }
    raw = redis_client.hgetall(RedisKeys(namespace).metric(FAMILY))
    assert not [field for field in raw if "app_c" in field or "app_d" in field]


def test_a_new_period_names_the_busiest_applications(client, redis_client, namespace):
    clock = Clock()
    metrics = FleetMetrics(redis_client, namespace, clock=clock, max_applications=1)
    metrics.record_end_to_end("app_quiet", 1.0)
    for _ in range(5):
        metrics.record_end_to_end("app_busy", 1.0)
    assert {app: p["count"] for app, p in end_to_end(client).items()} == {
        "app_quiet": 1.0,
        OTHER: 5.0,
    }
    clock.now += RANKING_PERIOD_SECONDS  # the first delivery of the next period ranks again
    metrics.record_end_to_end("app_busy", 1.0)
    # app_quiet's series ends, app_busy's starts from zero, other keeps what it had.
    assert {app: p["count"] for app, p in end_to_end(client).items()} == {
        "app_busy": 1.0,
        OTHER: 5.0,
    }


@pytest.mark.slow
def test_claim_returns_the_application_and_both_times_by_the_database(migrated_database_url):
    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=dict_row) as conn:
        delivery_id = insert_delivery(conn)
        conn.execute(
            "UPDATE webhook_messages SET created_at = now() - interval '90 seconds'"
            " WHERE id = (SELECT message_id FROM webhook_deliveries WHERE id = %s)",
            (delivery_id,),
        )
        row = conn.execute(
            CLAIM_ONE, {"id": delivery_id, "token": uuid.uuid4().hex, "lease": 30, "round": 60}
        ).fetchone()
    assert row["app_id"] == "app_default"
    age = (row["claimed_at"] - row["message_created_at"]).total_seconds()
    assert 90 <= age < 120
