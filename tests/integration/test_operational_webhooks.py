"""Operational webhooks (common/delivery/operational.py) on a migrated PostgreSQL of
this module's own, with the API in-process: who may have operational endpoints, the
events the API itself writes (a disable), and the router (worker/operational) that
turns the outbox into messages for the application's operational endpoints and for
``app_operations``'s, then onto the operational queue. What RECORD writes to the
outbox is tests/integration/test_delivery_record.py; a real worker delivering them,
signed, is tests/system/test_operational_e2e.py."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.app import create_app
from common.broker import DELIVER_TASK, queue_names
from common.config import load_settings, set_settings
from common.delivery.models import OPERATIONS_APP_ID
from common.redis.keys import RedisKeys
from tests.support.api import ADMIN, TOKEN
from tests.support.stack import fresh_database

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
        connection.execute("DELETE FROM webhook_operational_events")
        connection.execute("DELETE FROM webhook_endpoints WHERE app_id = %s", (OPERATIONS_APP_ID,))
        yield connection


BROKER_SETTINGS = ("broker_url", "broker_transport", "broker_transport_options")


@pytest.fixture
def worker_publisher(settings):
    """The worker's Celery app, publishing on this test's namespace: its configuration is
    read once per process, by whichever test used it first."""
    from worker.app import app
    from worker.celeryconfig import celery_config

    config = celery_config(settings)
    kept = {name: app.conf[name] for name in BROKER_SETTINGS}
    app.close()  # its connections were made with the old configuration
    app.conf.update({name: config[name] for name in BROKER_SETTINGS})
    yield app
    app.close()
    app.conf.update(kept)


def new_app(client, uid: str | None = None) -> str:
    body = {"name": f"t-{uuid.uuid4().hex[:6]}", **({"uid": uid} if uid else {})}
    created = client.post("/v1/apps", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def new_endpoint(client, app_id: str, **fields) -> str:
    created = client.post(
        f"/v1/apps/{app_id}/endpoints", json={"url": URL, **fields}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def refused(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def outbox(conn) -> list[dict]:
    return conn.execute(
        "SELECT app_id, event_type, data FROM webhook_operational_events ORDER BY id"
    ).fetchall()


def add_event(conn, app_id: str, event_type: str, **data) -> None:
    conn.execute(
        "INSERT INTO webhook_operational_events (app_id, event_type, data) VALUES (%s, %s, %s)",
        (app_id, event_type, Jsonb({"app_id": app_id, **data})),
    )


def messages_of(conn, app_id: str) -> list[dict]:
    """The app's messages, each with the endpoints its deliveries go to."""
    rows = conn.execute(
        """SELECT m.id, m.event_type, m.body, m.payload,
                  array_agg(d.endpoint_id ORDER BY d.endpoint_id) AS endpoints
           FROM webhook_messages m JOIN webhook_deliveries d ON d.message_id = m.id
           WHERE m.app_id = %s GROUP BY m.id ORDER BY m.created_at, m.id""",
        (app_id,),
    ).fetchall()
    return rows


def operational_tasks(redis_client, settings) -> list[dict]:
    """The headers of each task waiting in the operational queue (Redis broker)."""
    keys = RedisKeys(settings.jenga_namespace)
    queue = queue_names(settings.jenga_namespace)["operational"]
    return [
        json.loads(raw)["headers"]
        for key in keys.broker_queue_lists(queue)
        for raw in redis_client.lrange(key, 0, -1)
    ]


def test_who_may_be_operational_and_what_they_subscribe_to(client, conn):
    app_id = new_app(client)
    base = f"/v1/apps/{app_id}/endpoints"
    ops = client.post(
        base,
        json={"url": URL, "operational": True, "filter_types": ["endpoint.disabled"]},
        headers=ADMIN,
    )
    assert ops.status_code == 201 and ops.json()["operational"] is True
    assert client.get(f"{base}/{ops.json()['id']}", headers=ADMIN).json()["operational"] is True
    message = refused(
        client.post(
            base,
            json={"url": URL, "operational": True, "filter_types": ["order.paid"]},
            headers=ADMIN,
        ),
        422,
        "unknown_event_type",
    )
    assert "'order.paid' not an operational event" in message
    refused(
        client.post(
            base, json={"url": URL, "operational": True, "channels": ["eu"]}, headers=ADMIN
        ),
        422,
        "invalid_request",
    )
    refused(
        client.patch(f"{base}/{ops.json()['id']}", json={"filter_types": ["a.b"]}, headers=ADMIN),
        422,
        "unknown_event_type",
    )
    refused(  # fixed at creation
        client.patch(f"{base}/{ops.json()['id']}", json={"operational": False}, headers=ADMIN),
        422,
        "invalid_request",
    )
    # The sender cannot send its messages to an operational endpoint...
    refused(
        client.post(
            f"/v1/apps/{app_id}/messages",
            json={"event_type": "a.b", "payload": {}, "endpoint_id": ops.json()["id"]},
            headers=ADMIN,
        ),
        422,
        "operational_endpoint",
    )
    # ...and its fan-out never reaches one.
    plain = new_endpoint(client, app_id)
    sent = client.post(
        f"/v1/apps/{app_id}/messages",
        json={"event_type": "endpoint.disabled", "payload": {}},
        headers=ADMIN,
    )
    assert [d["endpoint_id"] for d in sent.json()["deliveries"]] == [plain]

    # app_operations: its endpoints are operational (by default), it takes no messages, it stays.
    fleet = client.post(f"/v1/apps/{OPERATIONS_APP_ID}/endpoints", json={"url": URL}, headers=ADMIN)
    assert fleet.status_code == 201 and fleet.json()["operational"] is True
    refused(
        client.post(
            f"/v1/apps/{OPERATIONS_APP_ID}/endpoints",
            json={"url": URL, "operational": False},
            headers=ADMIN,
        ),
        422,
        "invalid_request",
    )
    refused(
        client.post(
            f"/v1/apps/{OPERATIONS_APP_ID}/messages",
            json={"event_type": "a.b", "payload": {}},
            headers=ADMIN,
        ),
        422,
        "operations_app",
    )
    refused(client.delete(f"/v1/apps/{OPERATIONS_APP_ID}", headers=ADMIN), 409, "default_app")


def test_a_disable_through_the_api_is_told_once_and_enable_starts_afresh(client, conn):
    app_id = new_app(client)
    endpoint_id = new_endpoint(client, app_id)
    ops_id = new_endpoint(client, app_id, operational=True)
    path = f"/v1/apps/{app_id}/endpoints/{endpoint_id}"
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = now(), failing_notified_at = now()"
        " WHERE id = %s",
        (endpoint_id,),
    )
    assert client.post(f"{path}/disable", headers=ADMIN).status_code == 200
    assert client.post(f"{path}/disable", headers=ADMIN).status_code == 200  # already: no event
    [event] = outbox(conn)
    assert event["app_id"] == app_id and event["event_type"] == "endpoint.disabled"
    assert event["data"]["trigger"] == "manual" and event["data"]["endpoint_id"] == endpoint_id
    assert event["data"]["reason"] == "disabled through the API"

    assert client.post(f"{path}/enable", headers=ADMIN).status_code == 200
    row = conn.execute(
        "SELECT failing_since, failing_notified_at FROM webhook_endpoints WHERE id = %s",
        (endpoint_id,),
    ).fetchone()
    assert row == {"failing_since": None, "failing_notified_at": None}
    # An operational endpoint's disabling tells nobody.
    ops_path = f"/v1/apps/{app_id}/endpoints/{ops_id}"
    assert client.post(f"{ops_path}/disable", headers=ADMIN).status_code == 200
    assert len(outbox(conn)) == 1


def test_the_router_makes_a_message_per_subscribed_application_and_empties_the_outbox(
    client, conn, settings, redis_client, worker_publisher
):
    from worker.operational.tasks import route_events

    watched = new_app(client, uid=f"customer-{uuid.uuid4().hex[:6]}")
    every = new_endpoint(client, watched, operational=True)
    disabled_only = new_endpoint(
        client, watched, operational=True, filter_types=["endpoint.disabled"]
    )
    new_endpoint(client, watched)  # the sender's: never gets an operational event
    unwatched = new_app(client)  # no operational endpoint: its events go to the fleet's only
    fleet = new_endpoint(client, OPERATIONS_APP_ID)

    add_event(conn, watched, "endpoint.disabled", endpoint_id="ep_1", trigger="automatic")
    add_event(conn, watched, "endpoint.failing", endpoint_id="ep_2")
    add_event(conn, unwatched, "message.attempt.exhausted", endpoint_id="ep_3")
    assert route_events() == 3
    assert outbox(conn) == []

    mine = messages_of(conn, watched)
    assert [(m["event_type"], m["endpoints"]) for m in mine] == [
        ("endpoint.disabled", sorted([every, disabled_only])),
        ("endpoint.failing", [every]),
    ]
    body = json.loads(mine[0]["body"])
    assert body["type"] == "endpoint.disabled" and body["timestamp"]
    assert body["data"]["endpoint_id"] == "ep_1" and body["data"]["app_uid"].startswith("customer-")
    assert mine[0]["payload"] == body["data"]
    assert messages_of(conn, unwatched) == []  # nobody of its own asked
    fleets = messages_of(conn, OPERATIONS_APP_ID)
    assert [(m["event_type"], m["endpoints"]) for m in fleets] == [
        ("endpoint.disabled", [fleet]),
        ("endpoint.failing", [fleet]),
        ("message.attempt.exhausted", [fleet]),
    ]
    assert json.loads(fleets[2]["body"])["data"]["app_id"] == unwatched
    # No message was kept without a delivery.
    orphans = conn.execute(
        "SELECT count(*) AS n FROM webhook_messages m WHERE m.event_type LIKE 'endpoint.%%'"
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.message_id = m.id)"
    ).fetchone()
    assert orphans["n"] == 0

    # Their tasks wait on the operational queue (the Redis broker's list), none elsewhere.
    if settings.effective_broker_url.startswith("redis"):
        queued = operational_tasks(redis_client, settings)
        delivery_ids = {
            row["id"]
            for row in conn.execute(
                "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e"
                " ON e.id = d.endpoint_id WHERE e.operational"
            )
        }
        assert {h["argsrepr"].strip("(),'") for h in queued} == delivery_ids
        assert {h["task"] for h in queued} == {DELIVER_TASK}
        # A retry through the API goes there too.
        retried = client.post(
            f"/v1/apps/{OPERATIONS_APP_ID}/messages/{fleets[0]['id']}/retry", headers=ADMIN
        )
        assert retried.status_code == 202, retried.text
        assert len(operational_tasks(redis_client, settings)) == len(queued) + 1
