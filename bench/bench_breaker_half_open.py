"""Breaker benchmark 4: refused calls of a half-open breaker whose trial slots are all taken.

One process calls ``admit()`` in a loop for ``--seconds`` while the breaker's
only trial slot is held by a probe that has not reported yet. Counted: refused
calls per second, Redis round trips per second (``BreakerStore.step``), and
time per refused call. Baseline in the same run: ``refusal_hold=0`` (a round
trip per refused call, the behaviour before the hold).

Then: trial calls fleet-wide. ``--processes`` processes call ``admit()`` in a loop
(2 ms per admitted call, which fails) on a breaker whose open time has just
ended, for 0.3 s (less than the open time the failed trial starts): counted, the
trial calls that went out, per round (policy: one).

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_breaker_half_open [--seconds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
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
        keys = list(client.scan_iter(f"*{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _trial_caller(namespace, start_at, seconds, results):
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    registry = BreakerRegistry(client, namespace, TRIAL_POLICY).start()
    breaker = registry.breaker("svc")
    trials = 0
    while time.time() < start_at:
        time.sleep(0.001)
    while time.time() < start_at + seconds:
        admission = breaker.admit()
        if admission.allowed:
            trials += 1
            time.sleep(0.002)  # the service still fails
            breaker.record(True, admission=admission)
    results.put(trials)
    registry.close()


TRIAL_POLICY = bp.BreakerPolicy(
    failure_threshold=1, failure_rate=0, open_seconds=0.5, jitter=0, half_open_calls=1
)


def trials_fleet_wide(processes: int, rounds: int) -> list[int]:
    """Trial calls that went out fleet-wide in each round."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ctx = mp.get_context("fork")
    per_round = []
    for _ in range(rounds):
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        store = BreakerRegistry(client, namespace, TRIAL_POLICY).store
        store.step("svc", TRIAL_POLICY, "record", batch=(1, 1, 0, 1))  # open for 0.5 s
        queue = ctx.Queue()
        start_at = time.time() + 0.5  # the open time is over then
        procs = [
            ctx.Process(target=_trial_caller, args=(namespace, start_at, 0.3, queue))
            for _ in range(processes)
        ]
        for proc in procs:
            proc.start()
        per_round.append(sum(queue.get(timeout=30) for _ in procs))
        for proc in procs:
            proc.join(10)
        keys = list(client.scan_iter(f"{namespace}:*"))
        if keys:
            client.delete(*keys)
    return per_round


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.seconds:.0f} s per row")
    print("| refusal hold | refused calls/s | Redis round trips/s | µs per refused call |")
    print("|---|---|---|---|")
    for label, hold in (("none (baseline: a round trip per refusal)", 0.0), ("10 ms (ours)", 0.01)):
        per_second, trips, micros = run(hold, args.seconds)
        print(f"| {label} | {per_second:,.0f} | {trips:,.0f} | {micros:.2f} |")
    per_round = trials_fleet_wide(args.processes, args.rounds)
    print(
        f"\ntrial calls fleet-wide, {args.processes} processes, {args.rounds} rounds"
        f" (policy: 1 per half-open period): {per_round}"
    )


if __name__ == "__main__":
    main()
