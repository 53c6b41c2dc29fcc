"""Fan-out: one message, one delivery per subscribed endpoint (the API in-process on a
migrated PostgreSQL of this module's own, and the worker's own statements). The SQL
rule (``FAN_OUT``) is held to the pure one (``subscribes``) on every combination of
subscriptions below."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from api.app import create_app
from common.broker import DELIVER_TASK, FAN_OUT_DIRECT_MAX, FAN_OUT_TASK, queue_names
from common.config import load_settings, set_settings
from common.delivery.envelope import sql_iso_timestamp, webhook_body
from common.delivery.fan_out import subscribes
from common.redis.keys import RedisKeys
from tests.support.api import ADMIN, TOKEN
from tests.support.stack import fresh_database
from worker.delivery.queries import MESSAGE_DISPATCHED, claim
from worker.delivery.resources import execute

pytestmark = pytest.mark.slow

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


def new_app(client) -> str:
    created = client.post("/v1/apps", json={"name": f"t-{uuid.uuid4().hex[:6]}"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return f"/v1/apps/{created.json()['id']}"


def new_endpoint(client, app: str, **subscriptions) -> str:
    created = client.post(f"{app}/endpoints", json={"url": URL, **subscriptions}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def send(client, app: str, **message) -> dict:
    sent = client.post(f"{app}/messages", json={"payload": {"n": 1}, **message}, headers=ADMIN)
    assert sent.status_code == 202, sent.text
    return sent.json()


FILTERS = [None, ["order.paid"], ["order.paid", "order.refunded"], ["user.created"]]
CHANNELS = [None, ["eu"], ["eu", "us"], ["asia"]]
MESSAGES = [
    ("order.paid", None),
    ("order.paid", ["eu"]),
    ("order.refunded", ["us", "asia"]),
    ("user.created", ["asia"]),
    ("invoice.sent", None),
    ("invoice.sent", ["eu", "us"]),
]


def test_each_message_goes_to_exactly_the_endpoints_the_rule_says(client):
    app = new_app(client)
    endpoints = {
        new_endpoint(client, app, filter_types=f, channels=c): (f, c)
        for f, c in itertools.product(FILTERS, CHANNELS)
    }
    for event_type, channels in MESSAGES:
        message = send(client, app, event_type=event_type, channels=channels)
        got = {d["endpoint_id"] for d in message["deliveries"]}
        expected = {
            ep for ep, (f, c) in endpoints.items() if subscribes(f, c, event_type, channels)
        }
        assert got == expected, (event_type, channels)
        assert message["status"] == ("pending" if expected else "unrouted")


def test_each_delivery_is_claimed_on_its_own_and_carries_the_message_id(client, settings):
    app = new_app(client)
    first, second = new_endpoint(client, app), new_endpoint(client, app)
    message = send(client, app, event_type="a.b")
    claims = [claim(d["id"], settings) for d in message["deliveries"]]
    assert {c.endpoint_id for c in claims} == {first, second}
    assert {c.message_id for c in claims} == {message["id"]}  # one webhook-id for both
    assert all(claim(d["id"], settings) is None for d in message["deliveries"])  # leased


def test_disabled_and_paused_endpoints_and_a_named_endpoint(client, conn):
    app = new_app(client)
    live = new_endpoint(client, app)
    disabled = new_endpoint(client, app)
    paused = new_endpoint(client, app)
    picky = new_endpoint(client, app, filter_types=["only.this"])
    client.post(f"{app}/endpoints/{disabled}/disable", headers=ADMIN)
    client.post(f"{app}/endpoints/{paused}/pause", headers=ADMIN)

    message = send(client, app, event_type="a.b")
    by_endpoint = {d["endpoint_id"]: d for d in message["deliveries"]}
    assert set(by_endpoint) == {live, paused}  # not the disabled one, not the picky one
    assert by_endpoint[paused]["next_attempt_at"] is None  # kept until it resumes
    assert by_endpoint[live]["next_attempt_at"] is not None

    # Named: that endpoint only, whatever it subscribes to; a disabled one is refused.
    named = send(client, app, event_type="a.b", endpoint_id=picky)
    assert [d["endpoint_id"] for d in named["deliveries"]] == [picky]
    assert named["endpoint_id"] == picky
    refused = client.post(
        f"{app}/messages",
        json={"event_type": "a.b", "payload": {}, "endpoint_id": disabled},
        headers=ADMIN,
    )
    assert refused.status_code == 409


def test_an_endpoint_lists_what_it_got_and_filters_follow_deliveries(client, conn):
    app = new_app(client)
    eu = new_endpoint(client, app, channels=["eu"])
    other = new_endpoint(client, app, filter_types=["x.y"])
    to_eu = send(client, app, event_type="a.b", channels=["eu"])
    to_other = send(client, app, event_type="x.y")
    unrouted = send(client, app, event_type="nobody.cares")
    assert unrouted["deliveries"] == [] and unrouted["status"] == "unrouted"

    got = client.get(f"{app}/endpoints/{eu}/messages", headers=ADMIN).json()
    assert [m["id"] for m in got["data"]] == [to_eu["id"]] and got["done"]
    assert got["data"][0]["delivery_id"] == to_eu["deliveries"][0]["id"]
    listed = client.get(f"{app}/messages?endpoint_id={other}", headers=ADMIN).json()
    assert [m["id"] for m in listed["data"]] == [to_other["id"]]
    listed = client.get(f"{app}/messages?status=unrouted", headers=ADMIN).json()
    assert [m["id"] for m in listed["data"]] == [unrouted["id"]]

    # One delivery failed, the other delivered: the message reads failed, each says its own.
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now() WHERE id = %s",
        (to_eu["deliveries"][0]["id"],),
    )
    both = send(client, app, event_type="x.y", channels=["eu"])
    ids = {d["endpoint_id"]: d["id"] for d in both["deliveries"]}
    assert set(ids) == {eu, other}
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),"
        " attempt_count = 1 WHERE id = %s",
        (ids[eu],),
    )
    conn.execute(
        "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,"
        " last_error = 'HTTP 500', attempt_count = 8 WHERE id = %s",
        (ids[other],),
    )
    shown = client.get(f"{app}/messages/{both['id']}", headers=ADMIN).json()
    assert shown["status"] == "failed" and shown["attempt_count"] == 9
    assert shown["last_error"] == "HTTP 500"

    # Retry one endpoint's delivery: only it is pending again.
    retried = client.post(f"{app}/messages/{both['id']}/retry?endpoint_id={other}", headers=ADMIN)
    assert retried.status_code == 202, retried.text
    states = {d["endpoint_id"]: d["status"] for d in retried.json()["deliveries"]}
    assert states == {eu: "delivered", other: "pending"}
    missing = client.post(f"{app}/messages/{both['id']}/retry?endpoint_id=ep_nope", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "delivery_not_found"
    assert client.post(f"{app}/messages/{unrouted['id']}/retry", headers=ADMIN).status_code == 409


def test_subscriptions_are_validated_and_strict_catalog_checks_filter_types(
    client, settings_env, database_url, redis_client
):
    app = new_app(client)
    bad = client.post(
        f"{app}/endpoints", json={"url": URL, "channels": ["has space"]}, headers=ADMIN
    )
    assert bad.status_code == 422
    endpoint = new_endpoint(client, app, filter_types=[], channels=[])
    shown = client.get(f"{app}/endpoints/{endpoint}", headers=ADMIN).json()
    assert shown["filter_types"] is None and shown["channels"] is None  # empty: no filter
    patched = client.patch(
        f"{app}/endpoints/{endpoint}", json={"filter_types": ["a.b", "a.b"]}, headers=ADMIN
    )
    assert patched.json()["filter_types"] == ["a.b"]

    strict = load_settings(
        {
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "EVENT_TYPES_STRICT": "true",
        },
        wait_seconds=0,
    )
    with TestClient(create_app(strict), raise_server_exceptions=False) as strict_client:
        refused = strict_client.patch(
            f"{app}/endpoints/{endpoint}", json={"filter_types": ["not.registered"]}, headers=ADMIN
        )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unknown_event_type"
    assert "not.registered" in refused.json()["error"]["message"]


def queued_tasks(redis_client, settings) -> list[tuple[str, str]]:
    """(task name, its argument) of each task waiting in the deliveries queue (Redis broker)."""
    keys = RedisKeys(settings.jenga_namespace)
    queue = queue_names(settings.jenga_namespace)["deliveries"]
    tasks = []
    for key in keys.broker_queue_lists(queue):
        for raw in redis_client.lrange(key, 0, -1):
            headers = json.loads(raw)["headers"]
            tasks.append((headers["task"], headers["argsrepr"].strip("(),'")))
    return tasks


def test_a_big_fan_out_is_one_task_for_the_sender_to_publish(client, settings, redis_client):
    """Up to FAN_OUT_DIRECT_MAX deliveries the API publishes a task for each; past it, one
    fan-out task for the message (a worker turns it into one per delivery: the fan-out
    end to end is tests/system/test_webhook_e2e.py), and the deliveries it leaves to that
    task are the ones MESSAGE_DISPATCHED finds, less any a worker has started."""
    small, big = new_app(client), new_app(client)
    for _ in range(FAN_OUT_DIRECT_MAX):
        new_endpoint(client, small)
    for _ in range(10):
        new_endpoint(client, big)
    direct = send(client, small, event_type="a.b")
    assert sorted(queued_tasks(redis_client, settings)) == sorted(
        (DELIVER_TASK, d["id"]) for d in direct["deliveries"]
    )
    queue = queue_names(settings.jenga_namespace)["deliveries"]
    redis_client.delete(*RedisKeys(settings.jenga_namespace).broker_queue_lists(queue))

    fanned = send(client, big, event_type="a.b")
    assert len(fanned["deliveries"]) == 10
    assert queued_tasks(redis_client, settings) == [(FAN_OUT_TASK, fanned["id"])]

    def left_to_fan_out() -> list[str]:
        return [r["id"] for r in execute(MESSAGE_DISPATCHED, {"message_id": fanned["id"]})]

    assert sorted(left_to_fan_out()) == sorted(d["id"] for d in fanned["deliveries"])
    claim(fanned["deliveries"][0]["id"], settings)  # a worker has this one
    assert len(left_to_fan_out()) == 9


def test_a_message_and_its_deliveries_are_dated_by_postgres_in_one_write(client, conn):
    """The accept write (one statement) stamps the message, its body and its deliveries
    with the transaction's now(), and answers what it stored without reading it back."""
    app = new_app(client)
    first, second = new_endpoint(client, app), new_endpoint(client, app, channels=["eu"])
    payload = {"text": "héllo ✓", "n": [1, 2.5, None], "percent": "100%"}
    sent = send(client, app, event_type="order.paid", channels=["eu"], payload=payload)
    stored = conn.execute(
        "SELECT body, created_at, channels, payload FROM webhook_messages WHERE id = %s",
        (sent["id"],),
    ).fetchone()
    data_json = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    assert stored["body"] == webhook_body("order.paid", stored["created_at"], data_json)
    assert json.loads(stored["body"])["data"] == payload == stored["payload"]
    assert stored["channels"] == ["eu"]
    assert datetime.fromisoformat(sent["created_at"]) == stored["created_at"]
    deliveries = conn.execute(
        "SELECT id, endpoint_id, created_at, next_attempt_at, dispatched_at"
        " FROM webhook_deliveries WHERE message_id = %s ORDER BY endpoint_id",
        (sent["id"],),
    ).fetchall()
    assert {d["endpoint_id"] for d in deliveries} == {first, second}
    for row in deliveries:
        assert row["created_at"] == row["next_attempt_at"] == row["dispatched_at"]
        assert row["created_at"] == stored["created_at"]
    answered = {d["id"]: d for d in sent["deliveries"]}
    assert sorted(answered) == sorted(d["id"] for d in deliveries)
    for row in deliveries:
        assert answered[row["id"]]["endpoint_id"] == row["endpoint_id"]
        assert (
            datetime.fromisoformat(answered[row["id"]]["next_attempt_at"])
            == (row["next_attempt_at"])
        )
    assert sent["status"] == "pending" and sent["attempt_count"] == 0
    assert client.get(f"{app}/messages/{sent['id']}", headers=ADMIN).json()["deliveries"] == (
        sorted(sent["deliveries"], key=lambda d: (d["next_attempt_at"], d["id"]))
    )

    unrouted = send(client, new_app(client), event_type="order.paid")
    assert unrouted["status"] == "unrouted" and unrouted["deliveries"] == []
    created = conn.execute(
        "SELECT created_at FROM webhook_messages WHERE id = %s", (unrouted["id"],)
    ).fetchone()["created_at"]
    assert datetime.fromisoformat(unrouted["created_at"]) == created


@hsettings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    moment=st.one_of(
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)).map(
            lambda d: d.replace(microsecond=0)
        ),
    ),
    offset=st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_sql_writes_a_timestamp_as_python_isoformat_does(conn, moment, offset):
    """The body's timestamp, written by PostgreSQL, reads as webhook_body writes it:
    whatever the time zone it is given in, and without a fraction at .000000."""
    given_at = moment.replace(tzinfo=timezone(timedelta(minutes=offset)))
    written = conn.execute(
        f"SELECT {sql_iso_timestamp('CAST(%(t)s AS timestamptz)')} AS t", {"t": given_at}
    ).fetchone()["t"]
    assert written == given_at.astimezone(UTC).isoformat()


def test_a_message_to_an_application_deleted_behind_the_cache_is_refused_with_404(
    client, conn
):
    """The accept path reads the application from a cache (APP_CACHE_SECONDS): one
    deleted by another process meanwhile is refused by its foreign key, as a 404."""
    app = new_app(client)
    new_endpoint(client, app)
    send(client, app, event_type="order.paid")  # cached now
    conn.execute("DELETE FROM webhook_apps WHERE id = %s", (app.rpartition("/")[2],))
    refused = client.post(
        f"{app}/messages", json={"event_type": "order.paid", "payload": {}}, headers=ADMIN
    )
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "app_not_found"
