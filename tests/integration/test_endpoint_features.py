"""Endpoints as senders use them: a uid and metadata, custom headers that only the
application's own key reads, and secrets rotated with a grace. In-process against
the real PostgreSQL and Redis (the deliveries themselves: tests/system/test_webhook_e2e.py)."""

from __future__ import annotations

import base64

import psycopg
import pytest

from common.delivery.custom_headers import MASK
from tests.support.api import ADMIN, bearer, new_key

URL = "http://93.184.216.34/hook"
AUTH_HEADER = {"Authorization": "Bearer receiver-token"}


@pytest.fixture
def tenant(client):
    """An application, a key of its own and a read-only one."""
    app = client.post("/v1/apps", json={"name": "tenant"}, headers=ADMIN).json()
    return (
        app["id"],
        bearer(new_key(client, f"app:{app['id']}")),
        bearer(new_key(client, f"app:{app['id']}:read")),
    )


def test_uid_metadata_and_headers_are_kept_and_headers_shown_only_to_the_apps_own_key(
    client, tenant
):
    app, own, reader = tenant
    created = client.post(
        f"/v1/apps/{app}/endpoints",
        json={"url": URL, "uid": "billing", "metadata": {"team": "pay"}, "headers": AUTH_HEADER},
        headers=own,
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["uid"] == "billing" and endpoint["metadata"] == {"team": "pay"}
    assert endpoint["headers"] == AUTH_HEADER

    # By uid as by id; the values of custom headers for the app's own key only.
    assert client.get(f"/v1/apps/{app}/endpoints/billing", headers=own).json()["headers"] == (
        AUTH_HEADER
    )
    for other in (reader, ADMIN):
        shown = client.get(f"/v1/apps/{app}/endpoints/{endpoint['id']}", headers=other).json()
        assert shown["headers"] == {"Authorization": MASK}
        listed = client.get(f"/v1/apps/{app}/endpoints", headers=other).json()["data"]
        assert listed[0]["headers"] == {"Authorization": MASK}

    # A uid is unique per application: 409 for a second one, fine in another application.
    again = client.post(
        f"/v1/apps/{app}/endpoints", json={"url": URL, "uid": "billing"}, headers=own
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "uid_taken"
    elsewhere = client.post("/v1/endpoints", json={"url": URL, "uid": "billing"}, headers=ADMIN)
    assert elsewhere.status_code == 201, elsewhere.text

    # PATCH replaces the maps, clears the uid with null.
    patched = client.patch(
        f"/v1/apps/{app}/endpoints/billing",
        json={"uid": None, "metadata": {}, "headers": {"X-Tenant": "acme"}},
        headers=own,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["uid"] is None and patched.json()["metadata"] == {}
    assert patched.json()["headers"] == {"X-Tenant": "acme"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"headers": {"webhook-id": "x"}}, "headers"),
        ({"headers": {"X-Inject": "a\r\nHost: evil"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"metadata": {"k": 5}}, "metadata"),
        ({"uid": "has space"}, "uid"),
        ({"secret": "whsec_short"}, "secret"),
        ({"secret": "not-a-secret"}, "secret"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": 10_001}, "rate_limit"),
        ({"rate_limit": "fast"}, "rate_limit"),
    ],
)
def test_bad_endpoint_fields_are_422_naming_the_field(client, tenant, body, field):
    app, own, _ = tenant
    refused = client.post(f"/v1/apps/{app}/endpoints", json={"url": URL, **body}, headers=own)
    assert refused.status_code == 422, refused.text
    assert field in refused.json()["error"]["message"]
    assert "evil" not in refused.text


def test_a_rate_limit_is_kept_changed_and_cleared(client, tenant):
    app, own, _ = tenant
    created = client.post(
        f"/v1/apps/{app}/endpoints", json={"url": URL, "rate_limit": 50}, headers=own
    ).json()
    assert created["rate_limit"] == 50
    path = f"/v1/apps/{app}/endpoints/{created['id']}"
    # Not named: kept; a number: changed; null: no limit.
    assert client.patch(path, json={"description": "x"}, headers=own).json()["rate_limit"] == 50
    assert client.patch(path, json={"rate_limit": 7}, headers=own).json()["rate_limit"] == 7
    assert client.patch(path, json={"rate_limit": None}, headers=own).json()["rate_limit"] is None
    assert client.get(path, headers=own).json()["rate_limit"] is None


def previous_secret(migrated_database_url, endpoint_id: str) -> tuple[str | None, object]:
    with psycopg.connect(migrated_database_url) as conn:
        return conn.execute(
            "SELECT previous_secret, previous_secret_expires_at FROM webhook_endpoints"
            " WHERE id = %s",
            (endpoint_id,),
        ).fetchone()


def test_rotation_keeps_the_two_newest_secrets_for_the_grace(client, tenant, migrated_database_url):
    app, own, reader = tenant
    first = client.post(f"/v1/apps/{app}/endpoints", json={"url": URL}, headers=own).json()
    path = f"/v1/apps/{app}/endpoints/{first['id']}/secret"
    shown = client.get(path, headers=own).json()
    assert shown == {"secret": first["secret"], "previous_secret_expires_at": None}
    assert client.get(path, headers=reader).status_code == 403

    chosen = "whsec_" + base64.b64encode(b"s" * 32).decode()
    rotated = client.post(
        f"{path}/rotate", json={"secret": chosen, "grace_seconds": 3600}, headers=own
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] == chosen and rotated.json()["previous_secret_expires_at"]
    assert previous_secret(migrated_database_url, first["id"])[0] == first["secret"]

    # Rotating again during the grace: the newest two sign, the first no longer does.
    third = client.post(f"{path}/rotate", json={}, headers=own).json()
    assert third["secret"] not in (chosen, first["secret"])
    assert previous_secret(migrated_database_url, first["id"])[0] == chosen
    assert client.get(path, headers=own).json()["secret"] == third["secret"]

    # grace_seconds 0: only the new one signs from now on.
    client.post(f"{path}/rotate", json={"grace_seconds": 0}, headers=own)
    assert previous_secret(migrated_database_url, first["id"]) == (None, None)
    assert client.get(path, headers=own).json()["previous_secret_expires_at"] is None

    for body in ({"grace_seconds": 7 * 24 * 3600 + 1}, {"grace_seconds": -1}, {"secret": "x"}):
        refused = client.post(f"{path}/rotate", json=body, headers=own)
        assert refused.status_code == 422, body
    assert client.post(f"{path}/rotate", json={}, headers=reader).status_code == 403
    audited = client.get("/v1/audit?limit=1000", headers=ADMIN).json()["data"]
    assert [e["action"] for e in audited if e["target"] == first["id"]] == [
        "endpoint.secret_rotated"
    ] * 3


def test_send_example_sends_the_types_first_example(client, tenant, namespace):
    app, own, reader = tenant
    endpoint = client.post(f"/v1/apps/{app}/endpoints", json={"url": URL}, headers=own).json()
    name = f"{namespace}.order.paid"
    schema = {"type": "object", "required": ["id"], "examples": [{"id": "ord_1"}]}
    assert (
        client.post(
            "/v1/event-types", json={"name": name, "schema": schema}, headers=ADMIN
        ).status_code
        == 201
    )
    path = f"/v1/apps/{app}/endpoints/{endpoint['id']}/send-example"
    sent = client.post(path, json={"event_type": name}, headers=own)
    assert sent.status_code == 202, sent.text
    assert sent.json()["payload"] == {"id": "ord_1"} and sent.json()["event_type"] == name
    # A type without examples (or not in the catalog) gets a payload that says what it is.
    other = client.post(path, json={"event_type": f"{namespace}.other"}, headers=own).json()
    assert other["payload"] == {"example": True, "event_type": f"{namespace}.other"}
    assert client.post(path, json={"event_type": name}, headers=reader).status_code == 403
    assert client.post(path, json={"event_type": "has space"}, headers=own).status_code == 422
