"""Benchmark: what the key check and the per-key rate limit cost the API.

    .venv/bin/python -m bench.bench_api_auth [--requests 2000] [--threads 8] [--rounds 3]

Two ``python -m api`` processes on the same fresh database, Redis and machine,
measured in alternating rounds so both see the same background load:

* baseline: the bootstrap admin token (one constant-time comparison, as every
  request was checked before API keys existed) and ``API_RATE_LIMIT_PER_SECOND=0``;
* keys: an application-scoped API key (looked up by its hash, cached 5 s per
  process) and the rate limit on (one Lua call per request; its rate is set
  far above the load, so nothing is refused).

Each round sends ``--requests`` authenticated ``POST /v1/apps/{app}/messages``
then as many ``GET /v1/apps/{app}/messages/{id}`` from ``--threads`` client
threads, and reports throughput and p50/p99 latency per call. No worker runs:
the deliveries wait in the broker under the run's own namespace.

HTTP throughput on a shared 2-core machine moves by more than 5 % between rounds,
so the run also times the added work itself, in this process, ``--direct`` times:
the rate limit's Lua call on the same Redis (what every keyed request adds) and a
cached key lookup (SHA-256 of the key + the TTL cache), against the admin token's
constant-time comparison.
"""

from __future__ import annotations

import argparse
import hmac
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis
import sqlalchemy

from api.auth import principal_of_key
from common.access.ratelimit import RateOptions
from common.access.ratelimit_store import RateLimitStore
from tests.support.servers import (
    JengaProcess,
    base_redis_url,
    free_port,
    jenga_env,
    wait_for,
)
from tests.support.stack import fresh_database

TOKEN = "bench-admin-token-0123456789"


def start(database_url: str, namespace: str, **extra: str) -> tuple[JengaProcess, str]:
    port = free_port()
    env = jenga_env(
        DATABASE_URL=database_url,
        REDIS_URL=base_redis_url(),
        JENGA_NAMESPACE=namespace,
        JENGA_ADMIN_TOKEN=TOKEN,
        ALLOW_PRIVATE_DESTINATIONS="true",
        PORT=str(port),
        LOG_LEVEL="WARNING",
        **extra,
    )
    api = JengaProcess.api(env).start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/up", timeout=2).status_code == 200, 60, what="/up")
    return api, base


def timed(client: httpx.Client, method: str, path: str, **kwargs) -> float:
    started = time.perf_counter()
    response = client.request(method, path, **kwargs)
    elapsed = time.perf_counter() - started
    assert response.status_code < 300, (response.status_code, response.text[:200])
    return elapsed


def round_of(base: str, key: str, app: str, endpoint: str, n: int, threads: int) -> dict:
    headers = {"Authorization": f"Bearer {key}"}
    body = {"endpoint_id": endpoint, "event_type": "bench.auth", "payload": {"n": 1}}
    clients = [httpx.Client(base_url=base, headers=headers, timeout=10) for _ in range(threads)]
    ids: list[str] = []

    def post(i: int) -> float:
        client = clients[i % threads]
        started = time.perf_counter()
        response = client.post(f"/v1/apps/{app}/messages", json=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.text[:200]
        ids.append(response.json()["id"])
        return elapsed

    def get(i: int) -> float:
        return timed(clients[i % threads], "GET", f"/v1/apps/{app}/messages/{ids[i % len(ids)]}")

    result = {}
    with ThreadPoolExecutor(threads) as pool:
        for name, call in (("POST", post), ("GET", get)):
            started = time.perf_counter()
            latencies = list(pool.map(call, range(n)))
            result[name] = (n / (time.perf_counter() - started), latencies)
    for client in clients:
        client.close()
    return result


def per_call_us(call, n: int) -> tuple[float, float]:
    """Median and p99 of ``n`` calls of ``call``, in microseconds."""
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1_000_000)
    times.sort()
    return times[n // 2], times[int(n * 0.99)]


class _CachedKeyRequest:
    """Just enough of a request for :func:`api.auth.principal_of_key` (engine never used
    once the key is cached)."""

    class app:  # noqa: N801 - mirrors request.app
        class state:  # noqa: N801
            engine = None


def direct_costs(n: int, namespace: str, key: str, engine) -> list[tuple[str, float, float]]:
    client = redis.Redis.from_url(base_redis_url())
    store = RateLimitStore(client, namespace)
    options = RateOptions(per_second=1_000_000, burst=1_000_000)
    token, given = TOKEN.encode(), TOKEN.encode()
    request = _CachedKeyRequest()
    request.app.state.engine = engine
    principal_of_key(request, key)  # fills the cache
    try:
        return [
            ("admin token compare", *per_call_us(lambda: hmac.compare_digest(given, token), n)),
            ("key lookup (cached)", *per_call_us(lambda: principal_of_key(request, key), n)),
            ("rate limit (Lua)", *per_call_us(lambda: store.take("jk_bench", options), n)),
        ]
    finally:
        client.close()


def summary(rounds: list[dict], name: str) -> tuple[float, float, float]:
    rates = [r[name][0] for r in rounds]
    latencies = sorted(x for r in rounds for x in r[name][1])
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return statistics.median(rates), p50, p99


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--direct", type=int, default=20_000)
    args = parser.parse_args()
    namespace = f"benchauth{uuid.uuid4().hex[:6]}"
    with fresh_database() as database_url:
        baseline, baseline_url = start(database_url, namespace, API_RATE_LIMIT_PER_SECOND="0")
        keyed, keyed_url = start(
            database_url,
            namespace,
            API_RATE_LIMIT_PER_SECOND="100000",
            API_RATE_LIMIT_BURST="1000000",
        )
        try:
            admin = httpx.Client(
                base_url=baseline_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
            )
            app = admin.post("/v1/apps", json={"name": "bench"}).json()["id"]
            endpoint = admin.post(
                f"/v1/apps/{app}/endpoints", json={"url": "http://127.0.0.1:9/hook"}
            ).json()["id"]
            key = admin.post("/v1/keys", json={"scopes": [f"app:{app}"]}).json()["key"]
            runs: dict[str, list[dict]] = {"baseline": [], "keys": []}
            for _ in range(args.rounds):
                for label, base, credential in (
                    ("baseline", baseline_url, TOKEN),
                    ("keys", keyed_url, key),
                ):
                    runs[label].append(
                        round_of(base, credential, app, endpoint, args.requests, args.threads)
                    )
            engine = sqlalchemy.create_engine(
                database_url.replace("postgresql://", "postgresql+psycopg://", 1)
            )
            costs = direct_costs(args.direct, namespace, key, engine)
            engine.dispose()
        finally:
            baseline.stop()
            keyed.stop()
    print(
        f"machine: {os.cpu_count()} cores; {args.rounds} rounds of {args.requests} requests"
        f" per call, {args.threads} client threads, alternating"
    )
    for name in ("POST", "GET"):
        base_rate, base_p50, base_p99 = summary(runs["baseline"], name)
        rate, p50, p99 = summary(runs["keys"], name)
        print(
            f"{name:4}  baseline {base_rate:7.0f}/s p50 {base_p50:5.2f} ms p99 {base_p99:6.2f} ms"
            f"  |  keys+limit {rate:7.0f}/s p50 {p50:5.2f} ms p99 {p99:6.2f} ms"
            f"  |  throughput {100 * (rate / base_rate - 1):+.1f} %,"
            f" p99 {p99 - base_p99:+.2f} ms"
        )
    print(f"added work per request, {args.direct} calls each, in this process:")
    for name, p50, p99 in costs:
        print(f"  {name:22} p50 {p50:7.1f} us  p99 {p99:7.1f} us")


if __name__ == "__main__":
    main()
