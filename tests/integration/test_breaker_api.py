"""``GET /breakers``: breakers and limits from Redis; 503 with ``fallback: true`` without Redis."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from api.operator import OperatorListener
from common.config import load_settings
from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry


def test_lists_a_tripped_breaker_with_its_counts(settings, redis_client, namespace):
    registry = BreakerRegistry(
        redis_client, namespace, bp.BreakerPolicy(failure_threshold=3, failure_rate=0)
    )
    breaker = registry.breaker("webhook:a.example")
    breaker.record(False)
    breaker.record(True)
    registry.flush()
    with TestClient(OperatorListener(create_app(settings))) as client:
        body = client.get("/breakers").json()
        (view,) = body["breakers"]
        assert view["state"] == "closed" and view["window"] == {
            "calls": 2,
            "failures": 1,
            "slow": 0,
        }
        assert view["consecutive_failures"] == 1
        for _ in range(2):  # 1 + 2 consecutive failures
            breaker.record(True)
        registry.flush()
        (view,) = client.get("/breakers").json()["breakers"]
        assert view["state"] == "open" and view["reason"] == "3 consecutive failures"
        assert 0 < view["open_remaining_seconds"] <= 5
        assert isinstance(body["limits"], list) and body["fallback"] is False


def test_redis_down_is_503_with_fallback(settings_env):
    env = {
        **settings_env,
        "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
        "CHECK_TIMEOUT_SECONDS": "0.3",
    }
    with TestClient(OperatorListener(create_app(load_settings(env, wait_seconds=0)))) as client:
        response = client.get("/breakers")
    assert response.status_code == 503
    assert response.json()["fallback"] is True
    assert "hunter2" not in response.text
