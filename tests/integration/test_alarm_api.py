"""GET /alarms and `jenga alarms` read the store; Redis down is a 503 / exit 1, not a crash."""

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.operator import OperatorListener
from common.alarms.store import AlarmStore
from common.config import load_settings
from common.ops import cli


@pytest.fixture
def store(redis_client, namespace):
    return AlarmStore(redis_client, namespace, clear_after=1)


def test_get_alarms_shows_active_and_history(settings, store):
    store.record_check("postgres", False, "PostgreSQL is unreachable", details={"error": "refused"})
    store.set("breaker:acme", "breaker open", severity="warning")
    store.clear("breaker:acme")
    with TestClient(OperatorListener(create_app(settings))) as client:
        response = client.get("/alarms")
        assert response.status_code == 200
        body = response.json()
        assert [a["id"] for a in body["active"]] == ["postgres"]
        assert body["active"][0]["last_check"] == {"error": "refused"}
        assert [(e["alarm_id"], e["kind"]) for e in body["history"]] == [
            ("breaker:acme", "clear"),
            ("breaker:acme", "set"),
            ("postgres", "set"),
        ]
        assert len(client.get("/alarms", params={"limit": 1}).json()["history"]) == 1
        assert client.get("/alarms", params={"limit": 0}).status_code == 422


def test_get_alarms_when_redis_is_down_is_503(settings_env):
    from tests.support.servers import free_port

    settings = load_settings(
        {**settings_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, wait_seconds=0
    )
    with TestClient(OperatorListener(create_app(settings))) as client:
        response = client.get("/alarms")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert "Redis is unreachable" in response.json()["error"]["message"]


def test_cli_lists_alarms(settings_env, store, monkeypatch, capsys):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    store.record_check("postgres", False, "PostgreSQL is unreachable", details={"error": "refused"})
    assert cli.main(["alarms"]) == 0
    out = capsys.readouterr().out
    assert "active alarms: 1" in out and "postgres" in out and "(refused)" in out
    assert cli.main(["alarms", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["active"][0]["id"] == "postgres"


def test_cli_reports_unreachable_redis(settings_env, monkeypatch, capsys):
    from tests.support.servers import free_port

    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert cli.main(["alarms"]) == 1
    assert "Redis is unreachable" in capsys.readouterr().err
