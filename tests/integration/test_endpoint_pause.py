"""Pausing an endpoint keeps its deliveries (none attempted, none failed) and resuming
makes them due in order of creation, with the pause not counted against their
schedules. The API in-process and the worker's own statements, on a database of this
module's own (the dispatcher's scan must see only this test's messages)."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings, set_settings
from tests.support.api import ADMIN, TOKEN
from tests.support.stack import fresh_database
from worker.delivery.queries import CLAIM_DUE, claim
from worker.delivery.resources import execute

URL = "http://93.184.216.34/hook"


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


@pytest.fixture
def settings(settings_env, database_url, redis_client):
    settings = load_settings(
        {**settings_env, "DATABASE_URL": database_url, "JENGA_ADMIN_TOKEN": TOKEN},
        wait_seconds=0,
    )
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def due_ids(settings) -> list[str]:
    """What the dispatcher would enqueue now."""
    rows = execute(CLAIM_DUE, {"redispatch": 0, "batch": 1000, "lookahead": 1.5})
    return [row["id"] for row in rows]


def send(client, endpoint_id: str, n: int) -> str:
    sent = client.post(
        "/v1/messages",
        json={"endpoint_id": endpoint_id, "event_type": "t.paused", "payload": {"n": n}},
        headers=ADMIN,
    )
    assert sent.status_code == 202, sent.text
    return sent.json()["deliveries"][0]["id"]


def test_paused_deliveries_wait_and_resume_in_order_of_creation(client, conn, settings):
    endpoint = client.post("/v1/endpoints", json={"url": URL}, headers=ADMIN).json()
    before = send(client, endpoint["id"], 0)  # pending when the pause starts
    conn.execute(
        "UPDATE webhook_deliveries SET give_up_at = now() + interval '1 hour' WHERE id = %s",
        (before,),
    )
    paused = client.post(f"/v1/endpoints/{endpoint['id']}/pause", headers=ADMIN)
    assert paused.status_code == 200 and paused.json()["paused_at"] is not None
    during = [send(client, endpoint["id"], n) for n in (1, 2, 3)]

    # Nothing is due, nothing can be claimed, nothing is failed.
    assert due_ids(settings) == []
    assert all(claim(m, settings) is None for m in [before, *during])
    statuses = conn.execute(
        "SELECT status, next_attempt_at FROM webhook_deliveries WHERE endpoint_id = %s",
        (endpoint["id"],),
    ).fetchall()
    assert {(r["status"], r["next_attempt_at"]) for r in statuses} == {("pending", None)}
    # A retry scheduled by an attempt that was in flight when the pause began waits too.
    conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = %s", (before,))
    assert due_ids(settings) == [] and claim(before, settings) is None
    conn.execute(
        "UPDATE webhook_endpoints SET paused_at = now() - interval '2 hours' WHERE id = %s",
        (endpoint["id"],),
    )  # the pause lasted two hours

    resumed = client.post(f"/v1/endpoints/{endpoint['id']}/resume", headers=ADMIN)
    assert resumed.status_code == 200 and resumed.json()["paused_at"] is None
    in_due_order = conn.execute(
        "SELECT id FROM webhook_deliveries WHERE endpoint_id = %s ORDER BY next_attempt_at",
        (endpoint["id"],),
    ).fetchall()
    assert [r["id"] for r in in_due_order] == [before, *during]  # in order of creation
    assert sorted(due_ids(settings)) == sorted([before, *during])
    # The two hours of pause do not count against the schedule's deadline.
    left = conn.execute(
        "SELECT extract(epoch FROM give_up_at - now()) AS s FROM webhook_deliveries WHERE id = %s",
        (before,),
    ).fetchone()["s"]
    assert 3 * 3600 - 60 < left <= 3 * 3600
    assert claim(during[0], settings) is not None


def test_pause_and_resume_are_idempotent_and_distinct_from_disable(client, conn, settings):
    endpoint = client.post("/v1/endpoints", json={"url": URL}, headers=ADMIN).json()
    path = f"/v1/endpoints/{endpoint['id']}"
    first = client.post(f"{path}/pause", headers=ADMIN).json()["paused_at"]
    assert client.post(f"{path}/pause", headers=ADMIN).json()["paused_at"] == first
    kept = send(client, endpoint["id"], 1)  # a paused endpoint still accepts (disabled: 409)
    assert client.post(f"{path}/resume", headers=ADMIN).status_code == 200
    assert client.post(f"{path}/resume", headers=ADMIN).status_code == 200
    assert kept in due_ids(settings)
    assert client.post("/v1/endpoints/ep_nope/pause", headers=ADMIN).status_code == 404
    # A disabled endpoint has nothing to keep: 409, and it is not paused.
    assert client.post(f"{path}/disable", headers=ADMIN).status_code == 200
    refused = client.post(f"{path}/pause", headers=ADMIN)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"
    assert client.get(path, headers=ADMIN).json()["paused_at"] is None
