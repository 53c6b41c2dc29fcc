"""The event-type catalog: admins register types (with an optional payload schema),
any key reads them, messages are checked against their type's schema, and a strict
catalog refuses unknown types. In-process against the real PostgreSQL and Redis."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.config import load_settings
from tests.support.api import ADMIN, TOKEN, bearer, new_key

URL = "http://93.184.216.34/hook"
ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer", "minimum": 0}},
}


def client_for(settings_env, **extra: str):
    settings = load_settings({**settings_env, "JENGA_ADMIN_TOKEN": TOKEN, **extra}, wait_seconds=0)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def type_name() -> str:
    return f"order.paid.t{uuid.uuid4().hex[:8]}"


def endpoint_of(client) -> str:
    created = client.post("/v1/endpoints", json={"url": URL}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def send(client, endpoint: str, event_type: str, payload, headers=ADMIN):
    return client.post(
        "/v1/messages",
        json={"endpoint_id": endpoint, "event_type": event_type, "payload": payload},
        headers=headers,
    )


def test_a_registered_schema_is_checked_on_every_message(client, type_name):
    created = client.post(
        "/v1/event-types",
        json={"name": type_name, "description": "An order was paid.", "schema": ORDER_SCHEMA},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    assert created.json()["schema"] == ORDER_SCHEMA
    endpoint = endpoint_of(client)

    good = send(client, endpoint, type_name, {"order_id": "o1", "amount": 5})
    assert good.status_code == 202, good.text
    bad = send(client, endpoint, type_name, {"order_id": 7, "amount": -1})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "payload_invalid", error
    assert "payload['order_id']" in error["message"] and "payload['amount']" in error["message"]
    # A type not in the catalog is accepted (the catalog is not strict by default).
    assert send(client, endpoint, f"{type_name}.other", {"anything": 1}).status_code == 202

    # Removing the schema accepts what it refused, at once in this process.
    patched = client.patch(f"/v1/event-types/{type_name}", json={"schema": None}, headers=ADMIN)
    assert patched.status_code == 200, patched.text
    assert patched.json()["schema"] is None
    assert send(client, endpoint, type_name, {"order_id": 7}).status_code == 202


def test_schemas_that_cannot_be_used_are_refused(client, type_name):
    for schema, why in (
        ({"type": 5}, "not a usable JSON Schema"),
        # A $ref to a URL would make the API call out: refused, never fetched.
        ({"$ref": "http://169.254.169.254/latest/meta-data"}, "not a usable JSON Schema"),
        ({"enum": ["x" * 1000] * 100}, "the limit is"),
    ):
        refused = client.post(
            "/v1/event-types", json={"name": type_name, "schema": schema}, headers=ADMIN
        )
        assert refused.status_code == 422, (schema, refused.text)
        assert refused.json()["error"]["code"] == "invalid_schema"
        assert why in refused.json()["error"]["message"]
    assert client.get(f"/v1/event-types/{type_name}", headers=ADMIN).status_code == 404


def test_the_catalog_is_read_by_any_key_and_changed_by_admins_only(client, type_name):
    assert (
        client.post("/v1/event-types", json={"name": type_name}, headers=ADMIN).status_code == 201
    )
    again = client.post("/v1/event-types", json={"name": type_name}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "event_type_exists"

    app = client.post("/v1/apps", json={"name": "reader"}, headers=ADMIN).json()
    reader = bearer(new_key(client, f"app:{app['id']}:read"))
    assert client.get(f"/v1/event-types/{type_name}", headers=reader).status_code == 200
    assert client.get("/v1/event-types").status_code == 401
    for method, path, body in (
        ("POST", "/v1/event-types", {"name": f"{type_name}.x"}),
        ("PATCH", f"/v1/event-types/{type_name}", {"deprecated": True}),
        ("DELETE", f"/v1/event-types/{type_name}", None),
    ):
        assert client.request(method, path, json=body, headers=reader).status_code == 403, path

    # DELETE archives: hidden from the list unless asked for, still readable by name.
    assert client.delete(f"/v1/event-types/{type_name}", headers=ADMIN).status_code == 204
    listed = client.get("/v1/event-types?limit=500", headers=ADMIN).json()
    assert type_name not in [t["name"] for t in listed["data"]]
    every = client.get("/v1/event-types?include_archived=true&limit=500", headers=ADMIN).json()
    assert type_name in [t["name"] for t in every["data"]]
    assert client.get(f"/v1/event-types/{type_name}", headers=ADMIN).json()["archived"] is True
    # ?expunge=true removes it; every change is in the audit log.
    expunged = client.delete(f"/v1/event-types/{type_name}?expunge=true", headers=ADMIN)
    assert expunged.status_code == 204
    assert client.get(f"/v1/event-types/{type_name}", headers=ADMIN).status_code == 404
    actions = [
        e["action"]
        for e in client.get("/v1/audit?limit=1000", headers=ADMIN).json()["data"]
        if e["target"] == type_name
    ]
    assert actions == ["event_type.deleted", "event_type.archived", "event_type.created"]


def test_the_catalog_pages_by_name(client, namespace):
    names = [f"{namespace}.page.{i}" for i in range(5)]
    for name in reversed(names):
        assert client.post("/v1/event-types", json={"name": name}, headers=ADMIN).status_code == 201
    seen, iterator = [], None
    while True:
        query = "/v1/event-types?limit=2" + (f"&iterator={iterator}" if iterator else "")
        page = client.get(query, headers=ADMIN).json()
        seen += [t["name"] for t in page["data"] if t["name"].startswith(namespace)]
        if page["done"]:
            break
        iterator = page["iterator"]
    assert seen == names
    bad = client.get("/v1/event-types?iterator=%%%", headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_iterator"


def test_a_strict_catalog_refuses_unknown_types(settings_env, migrated_database_url, redis_client):
    with client_for(settings_env, EVENT_TYPES_STRICT="true") as client:
        endpoint = endpoint_of(client)
        refused = send(client, endpoint, f"unknown.t{uuid.uuid4().hex[:8]}", {})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unknown_event_type"
        name = f"known.t{uuid.uuid4().hex[:8]}"
        assert client.post("/v1/event-types", json={"name": name}, headers=ADMIN).status_code == 201
        assert send(client, endpoint, name, {}).status_code == 202
