"""Fair use through the API, against the real PostgreSQL and Redis: every key's
requests come out of one bucket in Redis whichever API process answers them (two
``create_app`` instances here), a request over the limit gets 429 with
``Retry-After`` and the RateLimit headers, and with Redis down the API still answers.
The buckets run on a test clock, moved by hand: nothing sleeps."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.rate_limit import RateLimiter
from common.config import load_settings
from common.redis.keys import RedisKeys

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_clients(settings_env, migrated_database_url, redis_client, clock):
    """``make_clients(n, **env)``: n API instances (n processes' worth) sharing one
    configuration and the test clock."""
    with ExitStack() as stack:

        def make(count: int = 1, **env: str) -> list[TestClient]:
            settings = load_settings(
                {**settings_env, "JENGA_ADMIN_TOKEN": TOKEN, **env}, wait_seconds=0
            )
            clients = []
            for _ in range(count):
                client = stack.enter_context(
                    TestClient(create_app(settings), raise_server_exceptions=False)
                )
                state = client.app.state
                state.rate_limiter = RateLimiter(state.redis, settings, clock=clock, pause=0)
                clients.append(client)
            return clients

        yield make


def new_key(client: TestClient, scopes: list[str]) -> str:
    response = client.post("/v1/keys", json={"scopes": scopes}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["key"]


def test_two_api_processes_share_one_bucket(make_clients, clock):
    """Burst 4 at 1 request a second: four requests spread over both instances get
    through, the fifth is refused by either; a second later one more gets through."""
    one, two = make_clients(2, API_RATE_LIMIT_PER_SECOND="1", API_RATE_LIMIT_BURST="4")
    answers = [client.get("/v1/apps", headers=ADMIN) for client in (one, two, one, two)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0"]
    assert {a.headers["ratelimit-limit"] for a in answers} == {"4"}
    assert one.get("/v1/apps", headers=ADMIN).status_code == 429
    assert two.get("/v1/apps", headers=ADMIN).status_code == 429
    clock.now += 1
    assert two.get("/v1/apps", headers=ADMIN).status_code == 200
    assert one.get("/v1/apps", headers=ADMIN).status_code == 429


def test_over_the_limit_is_a_429_with_retry_after_and_ratelimit_headers(make_clients, clock):
    (client,) = make_clients(API_RATE_LIMIT_PER_SECOND="2", API_RATE_LIMIT_BURST="3")
    for _ in range(3):
        assert client.get("/v1/apps", headers=ADMIN).status_code == 200
    refused = client.get("/v1/apps", headers=ADMIN)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"]["code"] == "rate_limited"
    assert "admin token" in body["error"]["message"] and body["detail"] == body["error"]["message"]
    # One token comes back in 0.5 s: Retry-After is whole seconds, at least 1.
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-limit"] == "3"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == "2"  # 3 tokens at 2 a second: 1.5 s
    clock.now += 0.5
    allowed = client.get("/v1/apps", headers=ADMIN)
    assert allowed.status_code == 200 and allowed.headers["ratelimit-remaining"] == "0"


def test_each_key_has_its_own_bucket_and_one_request_costs_one_token(make_clients, clock):
    (client,) = make_clients(API_RATE_LIMIT_PER_SECOND="1", API_RATE_LIMIT_BURST="5")
    app = client.post("/v1/apps", json={"name": "Limited"}, headers=ADMIN).json()
    greedy = new_key(client, [f"app:{app['id']}"])
    modest = new_key(client, [f"app:{app['id']}:read"])
    path = f"/v1/apps/{app['id']}/endpoints"
    for _ in range(5):
        assert client.get(path, headers={"Authorization": f"Bearer {greedy}"}).status_code == 200
    refused = client.get(path, headers={"Authorization": f"Bearer {greedy}"})
    assert refused.status_code == 429 and greedy[:11] in refused.json()["error"]["message"]
    assert greedy not in refused.text
    other = client.get(path, headers={"Authorization": f"Bearer {modest}"})
    assert other.status_code == 200 and other.headers["ratelimit-remaining"] == "4"
    # DELETE /v1/apps/{app} authenticates twice (require_admin, then the application's
    # check): still one token. Three admin calls so far, then the delete, then a read.
    assert client.delete(f"/v1/apps/{app['id']}", headers=ADMIN).status_code == 204
    assert client.get("/v1/apps", headers=ADMIN).headers["ratelimit-remaining"] == "0"


def test_no_limit_when_it_is_off(make_clients):
    (client,) = make_clients(API_RATE_LIMIT_PER_SECOND="0", API_RATE_LIMIT_BURST="1")
    for _ in range(5):
        answer = client.get("/v1/apps", headers=ADMIN)
        assert answer.status_code == 200 and "ratelimit-limit" not in answer.headers


def test_the_default_limiter_runs_on_redis_time(settings_env, migrated_database_url, redis_client):
    """Without a test clock: the bucket is charged on Redis's clock and the key expires."""
    env = {**settings_env, "JENGA_ADMIN_TOKEN": TOKEN, "API_RATE_LIMIT_BURST": "2"}
    with TestClient(create_app(load_settings(env, wait_seconds=0))) as client:
        assert client.get("/v1/apps", headers=ADMIN).headers["ratelimit-remaining"] == "1"
    key = RedisKeys(settings_env["JENGA_NAMESPACE"]).rate_limit("admin token")
    assert redis_client.pttl(key) > 0


def test_with_redis_down_requests_are_served_and_the_outage_logged_once(
    settings_env, migrated_database_url, redis_server, clock, caplog
):
    """Fail open: no 500, no 429, one warning for the outage; once Redis is back the
    limit applies again and its return is logged once."""
    caplog.set_level(logging.INFO, logger="jenga.api")
    env = {
        **settings_env,
        "REDIS_URL": redis_server.url,
        "JENGA_ADMIN_TOKEN": TOKEN,
        "API_RATE_LIMIT_PER_SECOND": "1",
        "API_RATE_LIMIT_BURST": "2",
    }
    settings = load_settings(env, wait_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        state = client.app.state
        state.rate_limiter = RateLimiter(state.redis, settings, clock=clock, pause=0)
        redis_server.stop()
        for _ in range(4):
            answer = client.get("/v1/apps", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            assert "ratelimit-limit" not in answer.headers
        redis_server.start()
        answers = [client.get("/v1/apps", headers=ADMIN).status_code for _ in range(3)]
        assert answers == [200, 200, 429]
    events = [getattr(r, "event", "") for r in caplog.records]
    assert events.count("api.rate_limit_unavailable") == 1
    assert events.count("api.rate_limit_restored") == 1
