"""Breaker benchmark 4: refused calls of a half-open breaker whose trial slots are all taken.

One process calls ``admit()`` in a loop for ``--seconds`` while the breaker's
only trial slot is held by a probe that has not reported yet. Counted: refused
calls per second, Redis round trips per second (``BreakerStore.step``), and
time per refused call. Baseline in the same run: ``refusal_hold=0`` (a round
trip per refused call, the behaviour before the hold).

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_breaker_half_open [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid

import redis

from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POLICY = bp.BreakerPolicy(
    failure_threshold=1,
    failure_rate=0,
    open_seconds=0.05,
    jitter=0,
    half_open_calls=1,
    lease_seconds=60,
)


def run(hold: float, seconds: float) -> tuple[float, float, float]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    registry = BreakerRegistry(client, namespace, POLICY, refusal_hold=hold)
    breaker = registry.breaker("svc")
    try:
        breaker.record(True)
        registry.flush()
        time.sleep(POLICY.open_seconds * 2)
        assert breaker.admit().probe, "the trial slot"
        steps = [0]
        real_step = registry.store.step

        def counted(*args, **kwargs):
            steps[0] += 1
            return real_step(*args, **kwargs)

        registry.store.step = counted
        refused = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            assert not breaker.admit().allowed
            refused += 1
        return refused / elapsed, steps[0] / elapsed, elapsed / refused * 1e6
    finally:
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.seconds:.0f} s per row")
    print("| refusal hold | refused calls/s | Redis round trips/s | µs per refused call |")
    print("|---|---|---|---|")
    for label, hold in (("none (baseline: a round trip per refusal)", 0.0), ("10 ms (ours)", 0.01)):
        per_second, trips, micros = run(hold, args.seconds)
        print(f"| {label} | {per_second:,.0f} | {trips:,.0f} | {micros:.2f} |")


if __name__ == "__main__":
    main()
