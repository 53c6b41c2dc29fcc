"""Who may do what: applications own endpoints and messages; scoped API keys
see only their application (another's ids answer 404, like missing ones);
every /v1 read needs a key. In-process against the real PostgreSQL and Redis."""

from __future__ import annotations

import psycopg

from tests.support.api import ADMIN, bearer, new_key

URL = "http://93.184.216.34/hook"


def new_app(client, name: str, uid: str | None = None) -> dict:
    response = client.post("/v1/apps", json={"name": name, "uid": uid}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def test_every_v1_read_needs_a_key(client):
    for path in ("/v1/endpoints", "/v1/messages", "/v1/apps", "/v1/keys"):
        anonymous = client.get(path)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert client.get(path, headers=bearer("jk_" + "x" * 43)).status_code == 401, path
        assert client.get(path, headers=bearer("not-a-key")).status_code == 401, path


def test_an_application_key_sees_its_application_only(client, namespace):
    acme, globex = new_app(client, "Acme", f"acme-{namespace}"), new_app(client, "Globex")
    acme_key, globex_key = (
        new_key(client, f"app:{acme['uid']}"),
        new_key(client, f"app:{globex['id']}"),
    )
    reader = new_key(client, f"app:{acme['id']}:read")

    created = client.post(
        f"/v1/apps/{acme['uid']}/endpoints", json={"url": URL}, headers=bearer(acme_key)
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    sent = client.post(
        f"/v1/apps/{acme['id']}/messages",
        json={"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}},
        headers=bearer(acme_key),
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]

    # The owner and its read-only key see them, by id or uid.
    listed = client.get(f"/v1/apps/{acme['uid']}/endpoints", headers=bearer(reader))
    assert [e["id"] for e in listed.json()["data"]] == [endpoint["id"]]
    shown = client.get(f"/v1/apps/{acme['id']}/messages/{message_id}", headers=bearer(reader))
    assert shown.status_code == 200
    # A read-only key may not write.
    refused = client.post(
        f"/v1/apps/{acme['id']}/endpoints", json={"url": URL}, headers=bearer(reader)
    )
    assert refused.status_code == 403

    # Another application's key: 404 for the application and for each of its ids.
    for path in (
        f"/v1/apps/{acme['id']}",
        f"/v1/apps/{acme['id']}/endpoints",
        f"/v1/apps/{globex['id']}/endpoints/{endpoint['id']}",
        f"/v1/apps/{globex['id']}/messages/{message_id}",
    ):
        assert client.get(path, headers=bearer(globex_key)).status_code == 404, path
    crossed = client.post(
        f"/v1/apps/{globex['id']}/messages",
        json={"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}},
        headers=bearer(globex_key),
    )
    assert crossed.status_code == 422 and crossed.json()["error"]["code"] == "unknown_endpoint"
    assert [a["id"] for a in client.get("/v1/apps", headers=bearer(globex_key)).json()["data"]] == [
        globex["id"]
    ]
    # Nor do the default application's routes reach another application's data.
    assert client.get(f"/v1/endpoints/{endpoint['id']}", headers=ADMIN).status_code == 404


def test_idempotency_keys_belong_to_their_application(client):
    apps = [new_app(client, "One"), new_app(client, "Two")]
    ids = []
    for app in apps:
        endpoint = client.post(
            f"/v1/apps/{app['id']}/endpoints", json={"url": URL}, headers=ADMIN
        ).json()
        sent = client.post(
            f"/v1/apps/{app['id']}/messages",
            json={"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}},
            headers={**ADMIN, "Idempotency-Key": "order-42"},
        )
        assert sent.status_code == 202 and "idempotent-replayed" not in sent.headers
        ids.append(sent.json()["id"])
    assert ids[0] != ids[1]


def test_a_key_is_shown_once_stored_as_a_hash_and_revocable(client, migrated_database_url):
    app = new_app(client, "Revocable")
    created = client.post(
        "/v1/keys", json={"name": "ci", "scopes": [f"app:{app['id']}"]}, headers=ADMIN
    ).json()
    key = created["key"]
    assert key.startswith("jk_") and created["prefix"] == key[:11]
    listed = client.get("/v1/keys", headers=ADMIN).json()["data"]
    assert key not in str(listed) and created["prefix"] in [k["prefix"] for k in listed]
    with psycopg.connect(migrated_database_url) as conn:
        rows = conn.execute("SELECT key_hash FROM api_keys WHERE id = %s", (created["id"],))
        assert key not in str(rows.fetchall())
    assert client.get(f"/v1/apps/{app['id']}/endpoints", headers=bearer(key)).status_code == 200
    assert client.delete(f"/v1/keys/{created['id']}", headers=ADMIN).status_code == 204
    assert client.get(f"/v1/apps/{app['id']}/endpoints", headers=bearer(key)).status_code == 401


def test_keys_are_made_by_admins_with_known_scopes(client):
    app = new_app(client, "Scoped")
    key = new_key(client, f"app:{app['id']}")
    assert (
        client.post("/v1/keys", json={"scopes": ["admin"]}, headers=bearer(key)).status_code == 403
    )
    for bad in (["root"], [f"app:{app['id']}:write"], ["app:app_missing"]):
        response = client.post("/v1/keys", json={"scopes": bad}, headers=ADMIN)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_scope"


def test_the_old_routes_are_the_default_application(client):
    endpoint = client.post("/v1/endpoints", json={"url": URL}, headers=ADMIN).json()
    via_app = client.get(f"/v1/apps/default/endpoints/{endpoint['id']}", headers=ADMIN)
    assert via_app.status_code == 200
    assert client.delete("/v1/apps/app_default", headers=ADMIN).status_code == 409
    paths = client.get("/openapi.json").json()["paths"]
    assert paths["/v1/endpoints"]["get"].get("deprecated") is True
    assert any(p["name"] == "app" for p in paths["/v1/apps/{app}/endpoints"]["get"]["parameters"])


def test_reads_that_hold_every_read_connection_never_starve_writes(client):
    """Reads and writes have separate pools: with every read connection taken,
    a message is still accepted, and a read waits its pool's timeout, then 503."""
    endpoint = client.post("/v1/endpoints", json={"url": URL}, headers=ADMIN).json()
    engine = client.app.state.read_engine
    # make_engine's pool: pool_size connections, as many again in overflow.
    held = [engine.connect() for _ in range(2 * engine.pool.size())]
    try:
        sent = client.post(
            "/v1/messages",
            json={"endpoint_id": endpoint["id"], "event_type": "a.b", "payload": {}},
            headers=ADMIN,
        )
        assert sent.status_code == 202, sent.text
        starved = client.get("/v1/messages", headers=ADMIN)
        assert starved.status_code == 503 and starved.json()["error"]["code"] == (
            "database_unavailable"
        )
    finally:
        for connection in held:
            connection.close()
    assert client.get("/v1/messages", headers=ADMIN).status_code == 200
