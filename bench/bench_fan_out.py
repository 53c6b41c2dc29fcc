"""Benchmark: what fan-out costs at accept time.

    .venv/bin/python -m bench.bench_fan_out [--requests 600] [--threads 8] [--rounds 3]

One ``python -m api`` process on a fresh database. Four applications: one whose
messages name their one endpoint (the baseline: what every message was before
fan-out), and three with 1, 10 and 100 endpoints subscribed to the message's type
(plus, in each, as many endpoints filtering other types, which the fan-out
statement must skip). Each round sends ``--requests`` authenticated
``POST /v1/apps/{app}/messages`` per application from ``--threads`` client
threads, the applications in turn, and reports throughput, p50/p99 latency and
deliveries written per second. No worker runs: tasks wait in the broker under the
run's own namespace (the API publishes one per delivery).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.bench_api_auth import TOKEN, start
from tests.support.stack import fresh_database

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def make_app(base: str, subscribed: int, others: int) -> tuple[str, str]:
    with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as client:
        app = client.post("/v1/apps", json={"name": f"fan-{subscribed}"}).json()["id"]
        first = None
        for n in range(subscribed + others):
            types = ["bench.fan"] if n < subscribed else [f"other.{n}"]
            created = client.post(
                f"/v1/apps/{app}/endpoints",
                json={"url": f"http://127.0.0.1:9/{n}", "filter_types": types},
            )
            assert created.status_code == 201, created.text
            first = first or created.json()["id"]
    return app, first


def round_of(base: str, app: str, body: dict, n: int, threads: int) -> tuple[float, list, int]:
    clients = [httpx.Client(base_url=base, headers=HEADERS, timeout=30) for _ in range(threads)]
    deliveries = []

    def post(i: int) -> float:
        started = time.perf_counter()
        response = clients[i % threads].post(f"/v1/apps/{app}/messages", json=body)
        elapsed = time.perf_counter() - started
        assert response.status_code == 202, response.text[:200]
        deliveries.append(len(response.json()["deliveries"]))
        return elapsed

    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        latencies = list(pool.map(post, range(n)))
        seconds = time.perf_counter() - started
    for client in clients:
        client.close()
    return n / seconds, latencies, sum(deliveries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with fresh_database() as database_url:
        api, base = start(
            database_url, f"benchfan{uuid.uuid4().hex[:6]}", API_RATE_LIMIT_PER_SECOND="0"
        )
        try:
            named_app, named_endpoint = make_app(base, 1, 0)
            cases = {
                "named endpoint (baseline)": (
                    named_app,
                    {"endpoint_id": named_endpoint, "event_type": "bench.fan", "payload": {}},
                ),
            }
            for subscribed in (1, 10, 100):
                app, _ = make_app(base, subscribed, subscribed)
                cases[f"fan-out to {subscribed}"] = (
                    app,
                    {"event_type": "bench.fan", "payload": {"n": 1}},
                )
            results = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (app, body) in cases.items():
                    results[name].append(round_of(base, app, body, args.requests, args.threads))
        finally:
            api.stop()
    print(
        f"machine: {os.cpu_count()} cores; {args.requests} POSTs x {args.rounds} rounds"
        f" per case, {args.threads} client threads, one API process"
    )
    for name, rounds in results.items():
        rate = statistics.median(r[0] for r in rounds)
        latencies = sorted(x for r in rounds for x in r[1])
        written = sum(r[2] for r in rounds) / sum(len(r[1]) for r in rounds)
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[int(len(latencies) * 0.99)] * 1000
        print(
            f"{name:28s} {rate:7.1f} msg/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            f"  {rate * written:8.0f} deliveries/s ({written:.0f} per message)"
        )


if __name__ == "__main__":
    main()
