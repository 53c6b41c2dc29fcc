"""The /v1 webhook API in-process (FastAPI's TestClient) against the real
PostgreSQL and Redis test servers: contract, bad input, auth, idempotency."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from common.config import load_settings
from tests.support.stack import durable_url, migrate_database

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PUBLIC_URL = "http://93.184.216.34/hook"  # a literal public address: no DNS needed


@pytest.fixture
def api_settings(settings_env, migrated_database_url, redis_client):
    env = {**settings_env, "JENGA_ADMIN_TOKEN": TOKEN, "MAX_PAYLOAD_BYTES": "2048"}
    return load_settings(env, wait_seconds=0)


@pytest.fixture
def client(api_settings):
    with TestClient(create_app(api_settings), raise_server_exceptions=False) as client:
        yield client


def make_endpoint(client, url=PUBLIC_URL, **extra):
    response = client.post("/v1/endpoints", json={"url": url, **extra}, headers=AUTH)
    assert response.status_code == 201, response.text
    return response.json()


def test_endpoint_lifecycle(client):
    created = make_endpoint(client, description="orders")
    assert created["secret"].startswith("whsec_") and created["disabled"] is False
    endpoint_id = created["id"]

    shown = client.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH).json()
    assert shown["url"] == PUBLIC_URL and "secret" not in shown  # the secret is shown once only
    assert endpoint_id in [
        e["id"] for e in client.get("/v1/endpoints", headers=AUTH).json()["data"]
    ]

    updated = client.patch(
        f"/v1/endpoints/{endpoint_id}", json={"description": "billing"}, headers=AUTH
    ).json()
    assert updated["description"] == "billing" and updated["url"] == PUBLIC_URL

    assert (
        client.post(f"/v1/endpoints/{endpoint_id}/disable", headers=AUTH).json()["disabled"] is True
    )
    refused = client.post(
        "/v1/messages",
        json={"endpoint_id": endpoint_id, "event_type": "a.b", "payload": {}},
        headers=AUTH,
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"
    assert (
        client.post(f"/v1/endpoints/{endpoint_id}/enable", headers=AUTH).json()["disabled"] is False
    )

    assert client.delete(f"/v1/endpoints/{endpoint_id}", headers=AUTH).status_code == 204
    missing = client.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "endpoint_not_found"


def test_writes_need_the_admin_token(client):
    assert client.post("/v1/endpoints", json={"url": PUBLIC_URL}).status_code == 401
    wrong = client.post(
        "/v1/endpoints", json={"url": PUBLIC_URL}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert client.post("/v1/messages", json={}).status_code == 401


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("ftp://93.184.216.34/x", "http"),
        ("javascript:alert(1)", "http"),
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]/hook", "loopback"),
        ("http://user:pw@93.184.216.34/", "password"),
    ],
)
def test_bad_or_private_urls_are_refused(client, url, fragment):
    response = client.post("/v1/endpoints", json={"url": url}, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_url" and fragment in error["message"]


def test_private_url_refused_on_update_too(client):
    endpoint = make_endpoint(client)
    response = client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"url": "http://192.168.1.1/"}, headers=AUTH
    )
    assert response.status_code == 422
    assert client.get(f"/v1/endpoints/{endpoint['id']}", headers=AUTH).json()["url"] == PUBLIC_URL


def test_message_accepted_and_shown(client):
    endpoint = make_endpoint(client)
    response = client.post(
        "/v1/messages",
        headers=AUTH,
        json={"endpoint_id": endpoint["id"], "event_type": "invoice.paid", "payload": {"n": 1}},
    )
    assert response.status_code == 202, response.text
    message = response.json()
    assert message["id"].startswith("msg_") and message["status"] == "pending"
    shown = client.get(f"/v1/messages/{message['id']}", headers=AUTH).json()
    assert (
        shown["payload"] == {"n": 1}
        and shown["attempts"] == []
        and shown["event_type"] == "invoice.paid"
    )
    listed = client.get(
        "/v1/messages", params={"endpoint_id": endpoint["id"]}, headers=AUTH
    ).json()["data"]
    assert [m["id"] for m in listed] == [message["id"]]


class FastClock(datetime):
    """This host's clock, an hour ahead of PostgreSQL's."""

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + timedelta(hours=1)


def stored_times(client, message_id):
    with client.app.state.engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT m.created_at, d.next_attempt_at, d.dispatched_at, m.body,"
                " d.created_at AS delivery_created_at, now() AS db_now"
                " FROM webhook_messages m JOIN webhook_deliveries d ON d.message_id = m.id"
                " WHERE m.id = :id"
            ),
            {"id": message_id},
        ).one()


def test_message_times_come_from_the_database_clock(client, monkeypatch):
    """The worker compares next_attempt_at and dispatched_at with PostgreSQL's now():
    the API's clock running ahead must not hold a new or retried message back."""
    monkeypatch.setattr("api.messages.datetime", FastClock)
    endpoint = make_endpoint(client)
    body = {"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}}
    message_id = client.post("/v1/messages", json=body, headers=AUTH).json()["id"]

    row = stored_times(client, message_id)
    # One transaction time for all of them, the one PostgreSQL's own default gives created_at.
    assert row.next_attempt_at == row.created_at == row.delivery_created_at
    assert row.dispatched_at in (row.created_at, None)  # None: the broker refused the task
    assert row.created_at <= row.db_now < row.created_at + timedelta(seconds=30)
    assert json.loads(row.body)["timestamp"] == row.created_at.astimezone(UTC).isoformat()

    retried = client.post(f"/v1/messages/{message_id}/retry", headers=AUTH)
    assert retried.status_code == 202, retried.text
    row = stored_times(client, message_id)
    assert row.next_attempt_at <= row.db_now < row.next_attempt_at + timedelta(seconds=30)
    assert row.dispatched_at in (row.next_attempt_at, None)
    assert datetime.fromisoformat(retried.json()["next_attempt_at"]) == row.next_attempt_at


def test_idempotency_key(client):
    endpoint = make_endpoint(client)
    body = {"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {"x": [1, 2]}}
    headers = {**AUTH, "Idempotency-Key": "key-1"}
    first = client.post("/v1/messages", json=body, headers=headers)
    again = client.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (
        len(
            client.get("/v1/messages", params={"endpoint_id": endpoint["id"]}, headers=AUTH).json()[
                "data"
            ]
        )
        == 1
    )

    different = client.post("/v1/messages", json={**body, "payload": {"x": 3}}, headers=headers)
    assert different.status_code == 422
    assert different.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        # Without endpoint_id a message fans out; a bad channel name or too many are refused.
        (
            json.dumps({"event_type": "a", "payload": 1, "channels": ["has space"]}).encode(),
            422,
            "invalid_request",
        ),
        (
            json.dumps({"event_type": "a", "payload": 1, "channels": ["c"] * 11}).encode(),
            422,
            "invalid_request",
        ),
        (
            json.dumps({"endpoint_id": "ep_nope", "event_type": "a", "payload": 1}).encode(),
            422,
            "unknown_endpoint",
        ),
        (
            json.dumps({"endpoint_id": "ep_x", "event_type": "has space", "payload": 1}).encode(),
            422,
            "invalid_request",
        ),
    ],
)
def test_bad_messages_get_clear_4xx(client, raw, status, code):
    response = client.post(
        "/v1/messages", content=raw, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        (
            "post",
            "/v1/messages",
            '{"endpoint_id": "{ep}", "event_type": "a.b", "payload": {"x": NaN}}',
        ),
        (
            "post",
            "/v1/messages",
            '{"endpoint_id": "{ep}", "event_type": "a.b", "payload": [Infinity]}',
        ),
        (
            "post",
            "/v1/messages",
            '{"endpoint_id": "{ep}", "event_type": "a.b", "payload": {"x": "a\\u0000b"}}',
        ),
        (
            "post",
            "/v1/messages",
            '{"endpoint_id": "{ep}\\u0000", "event_type": "a.b", "payload": 1}',
        ),
        (
            "post",
            "/v1/endpoints",
            '{"url": "http://93.184.216.34/hook", "description": "a\\u0000b"}',
        ),
        ("patch", "/v1/endpoints/{ep}", '{"description": "a\\u0000b"}'),
        ("get", "/v1/endpoints/%00", None),
        ("get", "/v1/messages/%00", None),
        ("get", "/v1/messages?endpoint_id=%00", None),
    ],
)
def test_values_postgresql_cannot_store_get_422_not_500(client, method, path, body):
    """NaN/Infinity (Python's JSON parser takes them) and NUL characters (PostgreSQL refuses
    them)."""
    endpoint = make_endpoint(client)
    kwargs = {} if body is None else {"content": body.replace("{ep}", endpoint["id"]).encode()}
    response = client.request(
        method.upper(),
        path.replace("{ep}", endpoint["id"]),
        headers={**AUTH, "content-type": "application/json"},
        **kwargs,
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert (
        client.get(f"/v1/endpoints/{endpoint['id']}", headers=AUTH).json()["description"] == ""
    )  # nothing changed


def test_payload_over_the_limit_is_413(client):
    endpoint = make_endpoint(client)
    body = {"endpoint_id": endpoint["id"], "event_type": "big", "payload": {"blob": "x" * 3000}}
    response = client.post("/v1/messages", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "MAX_PAYLOAD_BYTES" in response.json()["error"]["message"]


def test_huge_body_is_refused_before_it_is_read(client):
    """MAX_PAYLOAD_BYTES=2048: a body past 2 x 2048 + 64 KiB is refused from its
    Content-Length, and a chunked one (no Content-Length) as soon as it grows past it."""
    declared = client.post(
        "/v1/messages",
        content=b"{" + b" " * 200_000 + b"}",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunked():
        yield from (b" " * 10_000 for _ in range(100))

    streamed = client.post(
        "/v1/messages", content=chunked(), headers={**AUTH, "content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"


def test_unknown_message_is_404(client):
    assert (
        client.get("/v1/messages/msg_nope", headers=AUTH).json()["error"]["code"]
        == "message_not_found"
    )
    assert client.post("/v1/messages/msg_nope/retry", headers=AUTH).status_code == 404


def test_database_down_is_503_with_retry_after(settings_env, postgres_server, redis_client):
    url = durable_url(postgres_server)
    migrate_database(url)
    env = {**settings_env, "DATABASE_URL": url, "JENGA_ADMIN_TOKEN": TOKEN}
    with TestClient(
        create_app(load_settings(env, wait_seconds=0)), raise_server_exceptions=False
    ) as client:
        endpoint = make_endpoint(client)
        postgres_server.stop()
        body = {"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}}
        response = client.post("/v1/messages", json=body, headers={**AUTH, "Idempotency-Key": "k"})
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["error"]["code"] == "database_unavailable"
        postgres_server.start()
        # Nothing was stored: the retry with the same key creates the message now.
        accepted = client.post("/v1/messages", json=body, headers={**AUTH, "Idempotency-Key": "k"})
        assert accepted.status_code == 202 and "Idempotent-Replayed" not in accepted.headers
