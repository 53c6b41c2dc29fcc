"""The worker's promised-rate gate (worker/delivery/rate.py) on the real PostgreSQL and
Redis, one step at a time: a slot now is sent now, a slot ahead is reserved and spent
exactly once by the claim that finds it, a slot past the horizon holds the endpoint's
whole unreserved backlog back in one statement (not counted against the schedule), and
an unreachable Redis sends nothing. The API in-process, on a database of this module's
own (the statements scan the whole table)."""

from __future__ import annotations

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings, set_settings
from common.delivery.rate_slot_store import RateSlotStore
from tests.support.api import ADMIN, TOKEN
from tests.support.servers import free_port
from tests.support.stack import fresh_database
from worker.delivery import rate
from worker.delivery.queries import CLAIM_DUE, claim
from worker.delivery.rate import UNAVAILABLE_RETRY_SECONDS, slot_lookahead_seconds, wait_for_slot
from worker.delivery.resources import execute

URL = "http://93.184.216.34/hook"


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
            "DELIVERY_RATE_HORIZON_SECONDS": "2",
        },
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


def endpoint_with_backlog(client, rate_limit: int, n: int) -> tuple[str, list[str]]:
    endpoint = client.post(
        "/v1/endpoints", json={"url": URL, "rate_limit": rate_limit}, headers=ADMIN
    ).json()
    ids = []
    for i in range(n):
        sent = client.post(
            "/v1/messages",
            json={"endpoint_id": endpoint["id"], "event_type": "t.rate", "payload": {"n": i}},
            headers=ADMIN,
        )
        assert sent.status_code == 202, sent.text
        ids.append(sent.json()["deliveries"][0]["id"])
    return endpoint["id"], ids


def row(conn, delivery_id: str) -> dict:
    return conn.execute(
        "SELECT rate_slot_at, claim_token,"
        " extract(epoch FROM next_attempt_at - now())::float8 AS due_in,"
        " extract(epoch FROM give_up_at - now())::float8 AS give_up_in"
        " FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()


def test_a_reserved_slot_is_spent_exactly_once(client, conn, settings, redis_client):
    endpoint_id, (first, second) = endpoint_with_backlog(client, rate_limit=1, n=2)
    # The burst (one slot at 1 a second): sent now.
    assert wait_for_slot(claim(first, settings), settings) is None
    # The next slot is a second ahead: released until then, holding it.
    assert wait_for_slot(claim(second, settings), settings) == "deferred"
    held = row(conn, second)
    assert held["rate_slot_at"] is not None and held["claim_token"] is None
    assert 0 < held["due_in"] <= 1.0  # a second after the first slot, less the time since
    assert claim(second, settings) is None  # not due before its slot

    conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = %s", (second,))
    bucket = rate.store().read(endpoint_id)
    again = claim(second, settings)
    assert again.holds_rate_slot and row(conn, second)["rate_slot_at"] is None  # spent
    assert wait_for_slot(again, settings) is None
    assert rate.store().read(endpoint_id) == bucket  # no second slot taken for it


def test_past_the_horizon_the_backlog_waits_in_one_statement(client, conn, settings, redis_client):
    endpoint_id, ids = endpoint_with_backlog(client, rate_limit=1, n=5)
    # Other workers hold the endpoint's slots 4 s ahead already (the horizon is 2 s): the
    # next slot fits in 3 s. The last delivery holds a slot of its own, 1 s ahead.
    seconds, micros = redis_client.time()
    redis_client.hset(
        rate.store().keys.delivery_rate(endpoint_id),
        mapping={"tokens": -4 * 1_000_000, "at": seconds * 1_000_000 + micros},
    )
    conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 second',"
        " rate_slot_at = now() + interval '1 second' WHERE id = %s",
        (ids[4],),
    )
    kept = row(conn, ids[4])
    refused = claim(ids[0], settings)
    deadline = row(conn, ids[0])["give_up_in"]
    assert wait_for_slot(refused, settings) == "deferred"

    # It and the unreserved rest wait together, in one statement: until half a horizon
    # after a slot would fit again (3 + 1 s); the one holding a slot keeps it.
    waiting = conn.execute(
        "SELECT next_attempt_at, rate_slot_at, claim_token FROM webhook_deliveries"
        " WHERE id = ANY(%s)",
        (ids[:4],),
    ).fetchall()
    assert len({w["next_attempt_at"] for w in waiting}) == 1
    assert all(w["rate_slot_at"] is None and w["claim_token"] is None for w in waiting)
    assert 2.0 < row(conn, ids[0])["due_in"] <= 4.0
    assert row(conn, ids[4])["rate_slot_at"] is not None
    assert row(conn, ids[4])["due_in"] <= kept["due_in"]  # not moved
    # Waiting for the rate is not counted against the retry schedule.
    assert row(conn, ids[0])["give_up_in"] >= deadline + 2.0
    assert rate.store().read(endpoint_id).tokens <= -3 * 1_000_000  # nothing taken


def test_an_unreachable_redis_sends_nothing(client, conn, settings):
    _, (only,) = endpoint_with_backlog(client, rate_limit=100, n=1)
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    rate._store.set(RateSlotStore(dead, settings.jenga_namespace))
    try:
        assert wait_for_slot(claim(only, settings), settings) == "deferred"
    finally:
        rate._store.set(None)
    released = row(conn, only)
    assert released["claim_token"] is None and released["rate_slot_at"] is None
    assert UNAVAILABLE_RETRY_SECONDS - 2 < released["due_in"] <= UNAVAILABLE_RETRY_SECONDS


def test_a_slot_before_the_next_dispatch_run_is_enqueued_now_with_its_eta(client, conn, settings):
    """The dispatcher enqueues a delivery holding a send slot before the slot, with the slot
    as the task's ETA (sent on time, not up to a run late); a claim just before the slot
    (the worker's clock a little ahead) is taken, one without a slot is not."""
    _, (soon, later, unreserved) = endpoint_with_backlog(client, rate_limit=100, n=3)
    conn.execute(
        "UPDATE webhook_deliveries SET dispatched_at = NULL,"
        " next_attempt_at = now() + make_interval(secs => s),"
        " rate_slot_at = CASE WHEN r THEN now() + make_interval(secs => s) END"
        " FROM (VALUES (%s, 1.0, true), (%s, 30.0, true), (%s, 0.2, false)) AS v(i, s, r)"
        " WHERE id = v.i",
        (soon, later, unreserved),
    )
    slot = conn.execute("SELECT rate_slot_at FROM webhook_deliveries WHERE id = %s", (soon,))
    slot = slot.fetchone()["rate_slot_at"]
    lookahead = slot_lookahead_seconds(settings)
    assert lookahead > settings.delivery_dispatch_interval_seconds
    rows = {
        r["id"]: r["eta"]
        for r in execute(CLAIM_DUE, {"redispatch": 300, "batch": 1000, "lookahead": lookahead})
    }
    assert rows.get(soon) == slot  # enqueued now, to run at its slot
    assert later not in rows and unreserved not in rows  # past the run / not yet due

    conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '200 milliseconds'"
        " WHERE id = ANY(%s)",
        ([soon, unreserved],),
    )
    assert claim(unreserved, settings) is None
    taken = claim(soon, settings)
    assert taken is not None and taken.holds_rate_slot


def test_a_slot_missed_by_more_than_half_a_second_is_forfeited(client, conn, settings):
    """Claimed long after its slot (the fleet was overloaded), a delivery takes a new slot
    instead of going at once with every other late one."""
    _, (late, on_time) = endpoint_with_backlog(client, rate_limit=100, n=2)
    conn.execute(
        "UPDATE webhook_deliveries SET dispatched_at = NULL,"
        " next_attempt_at = now() - make_interval(secs => s),"
        " rate_slot_at = now() - make_interval(secs => s)"
        " FROM (VALUES (%s, 5.0), (%s, 0.1)) AS v(i, s) WHERE id = v.i",
        (late, on_time),
    )
    assert claim(late, settings).holds_rate_slot is False
    assert claim(on_time, settings).holds_rate_slot is True
