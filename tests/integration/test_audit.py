"""The audit log: every admin action through the API is recorded with who (a key's
prefix or ``admin token``), what and when (PostgreSQL's clock), in the transaction of
the change; ``GET /v1/audit`` pages through it newest first, for admin keys only."""

from __future__ import annotations

from tests.support.api import ADMIN, bearer

URL = "http://93.184.216.34/hook"


def audit_of(client, target: str, headers=ADMIN) -> list[dict]:
    """Every entry about ``target``, newest first, read page by page."""
    found, before = [], None
    while True:
        params = {"limit": 100} | ({"before": before} if before else {})
        page = client.get("/v1/audit", params=params, headers=headers)
        assert page.status_code == 200, page.text
        found += [e for e in page.json()["data"] if e["target"] == target]
        before = page.json()["before"]
        if before is None:
            return found


def test_key_and_application_actions_say_who_what_and_when(client):
    made = client.post("/v1/keys", json={"scopes": ["admin"], "name": "ops"}, headers=ADMIN)
    admin_key = made.json()
    [entry] = audit_of(client, admin_key["id"])
    assert entry["principal"] == "admin token" and entry["action"] == "key.created"
    assert entry["details"] == {"name": "ops", "prefix": admin_key["prefix"], "scopes": ["admin"]}
    # PostgreSQL's clock, in the same transaction as the key itself.
    assert entry["at"] == admin_key["created_at"]

    # A key is named by its prefix, never by the key.
    acme = client.post("/v1/apps", json={"name": "Acme"}, headers=bearer(admin_key["key"]))
    [created] = audit_of(client, acme.json()["id"])
    assert (created["principal"], created["action"]) == (admin_key["prefix"], "app.created")
    assert admin_key["key"] not in str(client.get("/v1/audit", headers=ADMIN).json())

    app_key = client.post(
        "/v1/keys", json={"scopes": [f"app:{acme.json()['id']}"]}, headers=ADMIN
    ).json()
    assert client.delete(f"/v1/keys/{app_key['id']}", headers=ADMIN).status_code == 204
    assert client.delete(f"/v1/keys/{app_key['id']}", headers=ADMIN).status_code == 204
    # Revoking twice is one revocation.
    assert [e["action"] for e in audit_of(client, app_key["id"])] == ["key.revoked", "key.created"]

    deleted = client.delete(f"/v1/apps/{acme.json()['id']}", headers=bearer(admin_key["key"]))
    assert deleted.status_code == 204
    assert [e["action"] for e in audit_of(client, acme.json()["id"])] == [
        "app.deleted",
        "app.created",
    ]


def test_a_refused_change_records_nothing(client, namespace):
    uid = f"taken-{namespace}"
    first = client.post("/v1/apps", json={"name": "One", "uid": uid}, headers=ADMIN)
    assert first.status_code == 201
    assert (
        client.post("/v1/apps", json={"name": "Two", "uid": uid}, headers=ADMIN).status_code == 409
    )
    entries = client.get("/v1/audit", params={"limit": 1000}, headers=ADMIN).json()["data"]
    assert [e["details"]["name"] for e in entries if (e["details"] or {}).get("uid") == uid] == [
        "One"
    ]
    bad = client.post("/v1/keys", json={"scopes": ["app:nothing-here"]}, headers=ADMIN)
    assert bad.status_code == 422
    assert (
        client.get("/v1/audit", params={"limit": 1}, headers=ADMIN).json()["data"][0]["target"]
        == first.json()["id"]
    )


def test_an_endpoint_deletion_names_the_application_key(client):
    app = client.post("/v1/apps", json={"name": "Shop"}, headers=ADMIN).json()
    key = client.post("/v1/keys", json={"scopes": [f"app:{app['id']}"]}, headers=ADMIN).json()
    endpoint = client.post(
        f"/v1/apps/{app['id']}/endpoints", json={"url": URL}, headers=bearer(key["key"])
    ).json()
    path = f"/v1/apps/{app['id']}/endpoints/{endpoint['id']}"
    assert client.delete(path, headers=bearer(key["key"])).status_code == 204
    [entry] = audit_of(client, endpoint["id"])
    assert entry["principal"] == key["prefix"] and entry["action"] == "endpoint.deleted"
    assert entry["details"] == {"app": app["id"]}


def test_a_forced_breaker_is_recorded(client, namespace):
    name = f"svc-{namespace}"
    assert client.post(f"/breakers/{name}/open", headers=ADMIN).status_code == 200
    assert client.post(f"/breakers/{name}/reset", headers=ADMIN).status_code == 200
    assert client.post(f"/breakers/nothing-{namespace}/close", headers=ADMIN).status_code == 404
    assert [(e["action"], e["details"]) for e in audit_of(client, name)] == [
        ("breaker.forced", {"action": "reset"}),
        ("breaker.forced", {"action": "open"}),
    ]
    assert audit_of(client, f"nothing-{namespace}") == []


def test_the_log_pages_newest_first_and_only_for_admins(client, namespace):
    ids = [
        client.post("/v1/apps", json={"name": f"p{n}"}, headers=ADMIN).json()["id"]
        for n in range(5)
    ]
    first = client.get("/v1/audit", params={"limit": 2}, headers=ADMIN).json()
    assert [e["target"] for e in first["data"]] == [ids[4], ids[3]]
    second = client.get(
        "/v1/audit", params={"limit": 2, "before": first["before"]}, headers=ADMIN
    ).json()
    assert [e["target"] for e in second["data"]] == [ids[2], ids[1]]
    assert first["before"] == first["data"][-1]["id"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"before": 0}, {"before": "x"}):
        assert client.get("/v1/audit", params=bad, headers=ADMIN).status_code == 422, bad

    reader = client.post("/v1/keys", json={"scopes": [f"app:{ids[0]}"]}, headers=ADMIN).json()
    assert client.get("/v1/audit", headers=bearer(reader["key"])).status_code == 403
    assert client.get("/v1/audit").status_code == 401
