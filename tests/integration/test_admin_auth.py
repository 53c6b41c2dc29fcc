"""The admin bearer token (api/auth.py) on the breaker admin API, against real Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.alarms.store import AlarmStore
from common.config import load_settings

TOKEN = "s3cret-admin-token-0123456789"


@pytest.fixture
def api(settings_env, redis_client):
    def make(token: str | None):
        env = dict(settings_env)
        if token:
            env["JENGA_ADMIN_TOKEN"] = token
        return TestClient(create_app(load_settings(env, wait_seconds=0)))

    return make


def test_admin_api_disabled_without_token(api):
    with api(None) as client:
        response = client.post("/breakers/slack/open", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403
    assert "admin API disabled" in response.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"],
)
def test_missing_or_wrong_token_is_401(api, header):
    headers = {"Authorization": header} if header else {}
    with api(TOKEN) as client:
        response = client.post("/breakers/slack/open", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text
        # nothing was forced
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/breakers", headers=admin).json()["breakers"] == []


def test_right_token_forces_open_close_reset(api, redis_client, namespace):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with api(TOKEN) as client:
        opened = client.post("/breakers/webhook:example.com/open", headers=auth)
        assert opened.status_code == 200, opened.text
        assert opened.json()["state"] == "open" and opened.json()["forced"] is True
        listed = client.get("/breakers", headers=auth).json()
        assert [b["name"] for b in listed["breakers"]] == ["webhook:example.com"]
        assert listed["fallback"] is False
        # opening raised the alarm
        alarms = AlarmStore(redis_client, namespace)
        assert alarms.is_open("breaker:webhook:example.com")
        # a customer's receiver: a warning for the status page, not a page for the on-call
        assert [a["severity"] for a in alarms.active()] == ["warning"]
        closed = client.post("/breakers/webhook:example.com/close", headers=auth)
        assert closed.status_code == 200 and closed.json()["state"] == "closed"
        assert not alarms.is_open("breaker:webhook:example.com")
        reset = client.post("/breakers/webhook:example.com/reset", headers=auth)
        assert reset.json()["total_trips"] == 0
        assert client.post("/breakers/nope/close", headers=auth).status_code == 404
        assert client.post("/breakers/slack/explode", headers=auth).status_code == 422


def test_operator_routes_need_an_admin_key_and_up_and_live_do_not(api):
    """They name hosts, users and driver errors: not for anyone who can reach the API."""
    with api(TOKEN) as client:
        for path in ("/health", "/status", "/metrics", "/alarms", "/breakers"):
            anonymous = client.get(path)
            assert anonymous.status_code == 401, path
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code in (
                200,
                503,
            ), path
        assert client.get("/live").status_code == 200
        assert client.get("/up").status_code in (200, 503)
