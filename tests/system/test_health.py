"""Level 2 on the API: /live, /up and /health under a running API whose
PostgreSQL and Redis are killed and restarted, and an API that boots with
every dependency down."""

from __future__ import annotations

import time

import httpx
import pytest

from api.health import health_document
from common.connections.dependency import DependencyState
from tests.support.servers import JengaProcess, free_port, jenga_env, wait_for

pytestmark = pytest.mark.slow


def test_health_document_shape():
    snapshot = {
        "postgres": DependencyState(
            "postgres",
            "down",
            changed_at=10.0,
            last_error="OperationalError: refused",
            attempt=3,
            latency_seconds=0.0012,
            checked_at=12.0,
        ),
        "redis": DependencyState(
            "redis", "up", changed_at=5.0, latency_seconds=0.0004, checked_at=12.0
        ),
        "broker": DependencyState("broker", "connecting", changed_at=1.0),
    }
    doc = health_document(snapshot)
    assert doc["status"] == "fail"
    pg = doc["checks"]["postgres:responseTime"][0]
    assert (pg["status"], pg["observedValue"], pg["observedUnit"], pg["output"]) == (
        "fail",
        1.2,
        "ms",
        "OperationalError: refused",
    )
    assert pg["time"] == "1970-01-01T00:00:12.000Z"
    assert "output" not in doc["checks"]["redis:responseTime"][0]
    assert doc["checks"]["broker:responseTime"][0]["status"] == "warn"
    del snapshot["postgres"]
    assert health_document(snapshot)["status"] == "warn"
    del snapshot["broker"]
    assert health_document(snapshot)["status"] == "pass"


TOKEN = "health-admin-token-0123456789"


def start_api(env: dict[str, str]) -> tuple[JengaProcess, str]:
    port = free_port()
    api = JengaProcess.api(
        jenga_env(
            **env,
            PORT=str(port),
            CHECK_INTERVAL_SECONDS="0.2",
            CHECK_TIMEOUT_SECONDS="1",
            JENGA_ADMIN_TOKEN=TOKEN,
        )
    ).start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/live", timeout=1).status_code == 200, 30, what="API /live")
    return api, base


def get(base: str, path: str) -> httpx.Response:
    """As an operator: /health needs an admin key (/up and /live do not)."""
    return httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2)


def up_status(base: str) -> int:
    return get(base, "/up").status_code


def test_up_follows_postgres_and_redis_outages(
    settings_env, postgres_server, redis_server, redis_url
):
    env = dict(
        settings_env,
        DATABASE_URL=postgres_server.url,
        REDIS_URL=redis_server.url,
        BROKER_URL=redis_url,
    )
    api, base = start_api(env)
    try:
        wait_for(lambda: up_status(base) == 200, 15, what="/up 200")
        assert get(base, "/up").json() == {"status": "OK"}
        assert get(base, "/health").json()["status"] == "pass"

        postgres_server.stop()
        wait_for(lambda: up_status(base) == 503, 5, what="/up 503 after PostgreSQL died")
        body = get(base, "/up").json()
        assert body["status"] == "LOADING" and body["missing"] == ["postgres"]
        assert get(base, "/live").status_code == 200
        health = get(base, "/health")
        assert health.status_code == 503 and health.headers["content-type"].startswith(
            "application/health+json"
        )
        assert health.json()["checks"]["postgres:responseTime"][0]["status"] == "fail"
        assert health.json()["checks"]["postgres:responseTime"][0]["output"]
        # Answers come from kept state: a dead server costs a request nothing.
        started = time.perf_counter()
        for _ in range(20):
            assert up_status(base) == 503
        assert (time.perf_counter() - started) / 20 < 0.2

        postgres_server.start()
        wait_for(lambda: up_status(base) == 200, 10, what="/up 200 after PostgreSQL came back")

        redis_server.stop()
        wait_for(lambda: up_status(base) == 503, 5, what="/up 503 after Redis died")
        assert get(base, "/up").json()["missing"] == ["redis"]
        assert get(base, "/live").status_code == 200
        redis_server.start()
        wait_for(lambda: up_status(base) == 200, 10, what="/up 200 after Redis came back")
        assert api.alive()
    finally:
        api.stop()
    assert "Traceback" not in api.output()


def test_api_boots_with_everything_down_then_climbs(settings_env, postgres_server, redis_server):
    postgres_server.stop()
    redis_server.stop()
    broker = type(redis_server)()  # a second throwaway Redis as the broker, not started yet
    env = dict(
        settings_env,
        DATABASE_URL=postgres_server.url,
        REDIS_URL=redis_server.url,
        BROKER_URL=broker.url,
    )
    api, base = start_api(env)
    try:
        assert get(base, "/live").status_code == 200
        wait_for(
            lambda: get(base, "/up").json().get("missing") == ["postgres", "redis", "broker"],
            10,
            what="all three reported missing",
        )
        assert up_status(base) == 503

        redis_server.start()
        wait_for(
            lambda: get(base, "/up").json().get("missing") == ["postgres", "broker"],
            10,
            what="redis up",
        )
        broker.start()
        wait_for(
            lambda: get(base, "/up").json().get("missing") == ["postgres"], 10, what="broker up"
        )
        assert get(base, "/health").json()["checks"]["broker:responseTime"][0]["status"] == "pass"
        postgres_server.start()
        wait_for(lambda: up_status(base) == 200, 10, what="/up 200 with everything up")
        assert api.alive()
    finally:
        api.stop()
        broker.close()
    assert "Traceback" not in api.output()
