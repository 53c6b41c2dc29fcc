"""Benchmark: a promised rate (an endpoint's ``rate_limit``) kept by a fleet of workers.

    PYTHONPATH=. .venv/bin/python -m bench.bench_endpoint_rate [--messages 1500] [--rate 50]
        [--workers 3] [--concurrency 8] [--rounds 2] [--calls 2000]

One API process, beat (the dispatcher), ``--workers`` worker processes (``-P threads
-c --concurrency``) on a fresh database, and a local receiver that notes when each
request arrives. Each round posts ``--messages`` messages at once to an endpoint
with no limit (the baseline: how fast the fleet delivers when nothing holds it back)
and then to one with ``rate_limit = --rate``, and reports for each: deliveries a
second from the first to the last arrival, the most arrivals in any 1 s and any
10 s window, and whether every message arrived exactly once. The fleet must be far
faster than the rate for the figure to mean anything: the baseline shows it is.

Then the cost of taking a slot: ``--calls`` reservations (``rate_slots.lua``) on the
shared Redis against the same number of the API's per-key rate-limit calls
(``ratelimit.lua``), p50 and p99.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import redis

from common.access.ratelimit import MICRO, RateOptions
from common.access.ratelimit_store import RateLimitStore
from common.delivery.rate_slot_store import RateSlotStore
from common.delivery.rate_slots import burst_for, options_for
from tests.support.receiver import WebhookReceiver
from tests.support.servers import base_database_url, base_redis_url, wait_for
from tests.support.stack import (
    AUTH,
    fresh_database,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)


def most_in_window(times: list[float], window: float) -> int:
    times, most, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_round(messages: int, rate: int, workers: int, concurrency: int) -> dict[str, dict]:
    settings_env = {
        "DATABASE_URL": base_database_url(),
        "REDIS_URL": base_redis_url(),
        "JENGA_NAMESPACE": f"benchrate{uuid.uuid4().hex[:6]}",
        "CONFIG_WAIT_SECONDS": "0",
    }
    results: dict[str, dict] = {}
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            settings_env, database_url, LOG_LEVEL="WARNING", DELIVERY_DISPATCH_INTERVAL_SECONDS="1"
        )
        client = start_api(stack, env)
        start_beat(stack, env)
        for n in range(workers):
            start_worker(stack, {**env, "LOG_LEVEL": "INFO"}, f"rate{n}", concurrency)
        arrivals: dict[str, list[float]] = {}
        lock = threading.Lock()

        def respond(seen) -> int:
            with lock:
                arrivals.setdefault(seen.path, []).append(time.monotonic())
            return 200

        receiver.respond = respond
        for case, limit in (("no limit (baseline)", None), (f"rate_limit {rate}/s", rate)):
            path = f"/{uuid.uuid4().hex[:8]}"
            endpoint = client.post(
                "/v1/endpoints",
                json={"url": receiver.url + path, "rate_limit": limit},
                headers=AUTH,
            ).json()

            def post(n: int, endpoint_id: str = endpoint["id"]) -> str:
                sent = client.post(
                    "/v1/messages",
                    json={"endpoint_id": endpoint_id, "event_type": "bench.rate", "payload": {}},
                    headers=AUTH,
                )
                assert sent.status_code == 202, sent.text
                return sent.json()["id"]

            with ThreadPoolExecutor(4) as pool:
                ids = set(pool.map(post, range(messages)))
            wait_for(
                lambda key=receiver.url_path + path: len(arrivals.get(key, [])) >= messages,
                messages / (limit or 50) * 3 + 120,
                interval=0.2,
                what=case,
            )
            times = arrivals[receiver.url_path + path]
            seen = receiver.by_id()
            once = all(len(seen.get(i, [])) == 1 for i in ids)
            span = max(times) - min(times)
            results[case] = {
                "rate": (len(times) - (burst_for(limit) if limit else 0)) / span,
                "max_1s": most_in_window(times, 1.0),
                "max_10s": most_in_window(times, 10.0) / 10,
                "once": once,
            }
    return results


def call_costs(calls: int) -> tuple[list[float], list[float]]:
    client = redis.Redis.from_url(base_redis_url(), decode_responses=True)
    namespace = f"benchrate{uuid.uuid4().hex[:6]}"
    slots, limits = RateSlotStore(client, namespace), RateLimitStore(client, namespace)
    slot_options, key_options = options_for(10_000), RateOptions(10_000, 1000)
    slot_times, limit_times = [], []
    try:
        for _ in range(calls):
            started = time.perf_counter()
            slots.reserve("ep_bench", slot_options, 60 * MICRO)
            slot_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            limits.take("jk_bench", key_options)
            limit_times.append(time.perf_counter() - started)
    finally:
        client.delete(slots.keys.delivery_rate("ep_bench"), limits.keys.rate_limit("jk_bench"))
        client.close()
    return sorted(slot_times), sorted(limit_times)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    rounds = []
    for number in range(1, args.rounds + 1):
        result = run_round(args.messages, args.rate, args.workers, args.concurrency)
        rounds.append(result)
        for case, r in result.items():
            print(
                f"round {number}: {case:22s} {r['rate']:7.1f} /s  most in 1 s {r['max_1s']:4d}"
                f"  10 s mean {r['max_10s']:6.1f} /s  exactly once: {r['once']}",
                flush=True,
            )
    slot_times, limit_times = call_costs(args.calls)
    print(
        f"machine: {os.cpu_count()} cores; {args.messages} messages per case; {args.workers}"
        f" workers -P threads -c {args.concurrency}; median of {args.rounds} rounds"
    )
    for case in rounds[0]:
        rate = statistics.median(r[case]["rate"] for r in rounds)
        max_1s = max(r[case]["max_1s"] for r in rounds)
        max_10s = max(r[case]["max_10s"] for r in rounds)
        once = all(r[case]["once"] for r in rounds)
        print(
            f"{case:22s} {rate:8.1f} deliveries/s; most in any 1 s: {max_1s};"
            f" busiest 10 s: {max_10s:.1f}/s; every message exactly once: {once}"
        )
    print(
        f"slot reservation (rate_slots.lua): p50 {pct(slot_times, 0.5):.0f} µs,"
        f" p99 {pct(slot_times, 0.99):.0f} µs; baseline API key limit (ratelimit.lua):"
        f" p50 {pct(limit_times, 0.5):.0f} µs, p99 {pct(limit_times, 0.99):.0f} µs"
    )


if __name__ == "__main__":
    main()
