"""Retention: finished messages lose their content after MESSAGE_RETENTION_DAYS and their
record after ATTEMPT_RETENTION_DAYS, in small batches, pending ones never; a privacy
request expunges one message now. Real PostgreSQL, a database of this module's own."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings, set_settings
from tests.support.api import ADMIN, TOKEN
from tests.support.message_rows import insert_delivery, insert_endpoint, insert_message
from tests.support.stack import fresh_database
from worker.tasks.retention import purge


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


@pytest.fixture
def settings(settings_env, database_url, redis_client):
    settings = load_settings(
        {
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "MESSAGE_RETENTION_DAYS": "30",
            "ATTEMPT_RETENTION_DAYS": "90",
            "RETENTION_BATCH": "3",
        },
        wait_seconds=0,
    )
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def aged(conn, endpoint_id: str, days: float, *statuses: str) -> str:
    """A message ``days`` old with a delivery in each of ``statuses`` (to ``endpoint_id``
    and then to new endpoints), each with one attempt that kept an excerpt."""
    message_id = insert_message(conn)
    conn.execute(
        "UPDATE webhook_messages SET created_at = now() - make_interval(days => %s) WHERE id = %s",
        (days, message_id),
    )
    for n, status in enumerate(statuses):
        delivery_id = insert_delivery(
            conn, endpoint_id if n == 0 else insert_endpoint(conn), message_id, status
        )
        conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, number, started_at, duration_ms,"
            " status_code, response_excerpt)"
            " VALUES (%s, 1, now(), 5, 500, 'the receiver said so')",
            (delivery_id,),
        )
    return message_id


def state(conn, message_id: str) -> dict | None:
    return conn.execute(
        "SELECT m.payload, m.body, m.expunge_reason,"
        " (SELECT array_agg(d.status) FROM webhook_deliveries d WHERE d.message_id = m.id)"
        " AS statuses,"
        " (SELECT array_agg(a.response_excerpt) FROM webhook_attempts a"
        "  JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.message_id = m.id)"
        " AS excerpts FROM webhook_messages m WHERE m.id = %s",
        (message_id,),
    ).fetchone()


def test_content_then_record_expire_oldest_first_in_batches(conn, settings):
    endpoint = insert_endpoint(conn)
    fresh = aged(conn, endpoint, 1, "delivered")
    old = [
        aged(conn, endpoint, 40 + i, status) for i, status in enumerate(["delivered", "failed"] * 4)
    ]
    ancient = [aged(conn, endpoint, 100 + i, "delivered") for i in range(4)]
    waiting = aged(conn, endpoint, 200, "pending")
    # Fanned out: one endpoint still pending keeps the whole message.
    half_done = aged(conn, endpoint, 200, "delivered", "pending")

    counts = purge(settings)
    assert counts["deleted"] == 4 and counts["expunged"] == 8, counts
    assert counts["longest_batch_ms"] >= 0

    for message_id in ancient:
        assert state(conn, message_id) is None  # the row and its attempts are gone
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE message_id = ANY(%s)", (ancient,)
        ).fetchone()["n"]
        == 0
    )
    for message_id in old:
        expunged = state(conn, message_id)
        assert expunged["payload"] is None and expunged["body"] == ""
        assert expunged["expunge_reason"] == "retention" and expunged["excerpts"] == [None]
        assert expunged["statuses"][0] in ("delivered", "failed")  # the record stays
    assert state(conn, fresh)["payload"] == {} and state(conn, fresh)["excerpts"] == [
        "the receiver said so"
    ]
    assert state(conn, waiting)["payload"] == {}  # pending: never purged
    assert state(conn, half_done)["payload"] == {}
    assert state(conn, half_done)["excerpts"] == ["the receiver said so"] * 2
    again = purge(settings)
    assert (again["deleted"], again["expunged"]) == (0, 0)


def test_a_run_stops_at_its_time_budget_and_the_next_goes_on(conn, settings):
    endpoint = insert_endpoint(conn)
    old = [aged(conn, endpoint, 50, "delivered") for _ in range(7)]
    # A message no endpoint was subscribed to has no delivery: finished at once.
    old.append(aged(conn, endpoint, 50))
    first = purge(settings, run_seconds=0)  # no time at all: nothing done
    assert first["expunged"] == 0
    assert purge(settings)["expunged"] == 8
    assert all(state(conn, m)["expunge_reason"] == "retention" for m in old)


def test_expunging_one_message_on_request(conn, settings, redis_client):
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        endpoint = client.post(
            "/v1/endpoints", json={"url": "http://93.184.216.34/h"}, headers=ADMIN
        )
        endpoint_id = endpoint.json()["id"]
        sent = client.post(
            "/v1/messages",
            json={
                "endpoint_id": endpoint_id,
                "event_type": "user.erased",
                "payload": {"email": "a@b"},
            },
            headers=ADMIN,
        ).json()
        path = f"/v1/messages/{sent['id']}"
        assert client.delete(f"{path}/content", headers=ADMIN).status_code == 204
        shown = client.get(path, headers=ADMIN).json()
        assert shown["payload"] is None and shown["expunge_reason"] == "request"
        # Not yet delivered: it will not be, and says why; the body is gone from PostgreSQL too.
        assert shown["status"] == "failed" and "expunged" in shown["last_error"]
        assert [d["status"] for d in shown["deliveries"]] == ["failed"]
        assert state(conn, sent["id"])["body"] == ""
        listed = client.get("/v1/messages?limit=1000", headers=ADMIN).json()["data"]
        assert [m["expunged_at"] is not None for m in listed if m["id"] == sent["id"]] == [True]
        # Idempotent; a retry of it is refused; the request is audited.
        assert client.delete(f"{path}/content", headers=ADMIN).status_code == 204
        retried = client.post(f"{path}/retry", headers=ADMIN)
        assert retried.status_code == 409 and retried.json()["error"]["code"] == "message_expunged"
        assert client.delete("/v1/messages/msg_nope/content", headers=ADMIN).status_code == 404
        audited = client.get("/v1/audit?limit=100", headers=ADMIN).json()["data"]
        assert [e["action"] for e in audited if e["target"] == sent["id"]] == [
            "message.content_expunged"
        ]
