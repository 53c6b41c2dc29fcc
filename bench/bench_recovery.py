"""Recovery and /up latency: how fast the API's readiness follows a dependency.

Starts a throwaway PostgreSQL and Redis (and uses the local Redis as broker),
runs the API (`python -m api`) with default RECONNECT_*/CHECK_* settings, then:

* /up and /live (the baseline: no dependency state read) latency, everything up;
* seconds from killing PostgreSQL (SIGKILL) / Redis to /up answering 503;
* /up latency while PostgreSQL is down;
* seconds from PostgreSQL / Redis accepting connections again to /up 200.

    .venv/bin/python -m bench.bench_recovery [--trials 3] [--requests 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import httpx

from tests.support.servers import (
    JengaProcess,
    PostgresServer,
    RedisServer,
    base_redis_url,
    free_port,
    jenga_env,
    wait_for,
)


def latencies(client: httpx.Client, path: str, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        client.get(path)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return samples[len(samples) // 2] * 1000, samples[
        min(len(samples) - 1, int(len(samples) * 0.99))
    ] * 1000


def time_until(client: httpx.Client, status: int, timeout: float = 60) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if client.get("/up").status_code == status:
            return time.perf_counter() - started
        time.sleep(0.01)
    raise RuntimeError(f"/up did not answer {status} within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    args = parser.parse_args()

    postgres, redis_server = PostgresServer().start(), RedisServer().start()
    port = free_port()
    env = jenga_env(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis_server.url,
        BROKER_URL=base_redis_url(),
        JENGA_NAMESPACE=f"bench{uuid.uuid4().hex[:6]}",
        PORT=str(port),
        LOG_LEVEL="WARNING",
    )
    api = JengaProcess.api(env).start()
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        wait_for(lambda: client.get("/up").status_code == 200, 30, what="/up 200")
        live = latencies(client, "/live", args.requests)
        up = latencies(client, "/up", args.requests)
        results = {"to_503": {"postgres": [], "redis": []}, "to_200": {"postgres": [], "redis": []}}
        down_up = None
        for _ in range(args.trials):
            for name, server in (("postgres", postgres), ("redis", redis_server)):
                server.stop()
                results["to_503"][name].append(time_until(client, 503))
                if name == "postgres" and down_up is None:
                    down_up = latencies(client, "/up", args.requests)
                time.sleep(args.outage_seconds)  # an outage long enough for the backoff to grow
                server.start()
                results["to_200"][name].append(time_until(client, 200))
        print(
            f"machine: {os.cpu_count()} cores; defaults RECONNECT_BASE_SECONDS=0.5"
            " RECONNECT_CAP_SECONDS=5 CHECK_INTERVAL_SECONDS=1 CHECK_TIMEOUT_SECONDS=1;"
            f" {args.trials} trials, {args.outage_seconds}s outages"
        )
        print(f"/live (baseline), all up:  p50 {live[0]:.2f} ms  p99 {live[1]:.2f} ms")
        print(f"/up, all up:               p50 {up[0]:.2f} ms  p99 {up[1]:.2f} ms")
        print(f"/up, PostgreSQL down:      p50 {down_up[0]:.2f} ms  p99 {down_up[1]:.2f} ms")
        for kind, label in (("to_503", "dies -> /up 503"), ("to_200", "back -> /up 200")):
            for name, values in results[kind].items():
                print(
                    f"{name} {label}: mean {statistics.mean(values):.2f} s"
                    f"  max {max(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})"
                )
    finally:
        api.stop()
        postgres.close()
        redis_server.close()


if __name__ == "__main__":
    main()
