"""Breaker benchmarks 1 and 3.

1. Per-call overhead through a closed breaker: a bare call, the in-process
   ``circuitbreaker`` package, pybreaker with its Redis storage, and ours (the
   ``@circuit(cls=SharedCircuitBreaker)`` drop-in, and the full
   ``GuardedTask.guard()`` path: breaker + shared AIMD limit slot).
3. Propagation: 8 processes call a service that starts failing; time from the
   trip (the Lua step that opened the breaker) until each process refuses, and
   how many calls still reached the failing service after the trip. Baselines in
   the same run: per-process ``circuitbreaker`` breakers (same threshold), pybreaker
   with its Redis storage, and ours as it was before issue 17 (failures buffered
   like successes, ``_buffered_record``, and no Redis admit while failures are counted).

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_breaker [--calls 20000] [--rounds 10] [--processes 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import timeit
import uuid

import circuitbreaker
import pybreaker
import redis

from common.config import load_settings, set_settings
from common.guards.breaker import breaker as breaker_module
from common.guards.breaker import policy as bp
from common.guards.breaker.breaker import SharedBreaker
from common.guards.breaker.compat import SharedCircuitBreaker
from common.guards.breaker.registry import BreakerRegistry, set_default_registry
from common.redis.keys import RedisKeys

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def per_call(fn, calls: int) -> float:
    """Best of 5 runs, in microseconds per call."""
    return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e6


def bench_overhead(calls: int, namespace: str) -> list[tuple[str, float]]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def noop():
        return None

    results = [("bare call", per_call(noop, calls))]
    in_process = circuitbreaker.circuit(failure_threshold=5, name=f"cb-{namespace}")(noop)
    results.append(("circuitbreaker (in process)", per_call(in_process, calls)))

    raw = redis.Redis.from_url(REDIS_URL)  # pybreaker's storage wants bytes
    storage = pybreaker.CircuitRedisStorage(
        pybreaker.STATE_CLOSED, raw, namespace=f"{namespace}:pyb"
    )
    pyb = pybreaker.CircuitBreaker(fail_max=5, state_storage=storage)
    results.append(
        (
            "pybreaker + CircuitRedisStorage",
            per_call(lambda: pyb.call(noop), max(calls // 10, 1000)),
        )
    )

    registry = BreakerRegistry(client, namespace, bp.BreakerPolicy()).start()

    class Shared(SharedCircuitBreaker):
        REGISTRY = registry

    ours = circuitbreaker.circuit(cls=Shared, name=f"ours-{namespace}")(noop)
    results.append(("ours: @circuit(cls=SharedCircuitBreaker)", per_call(ours, calls)))

    settings = load_settings(
        {
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": "postgresql://x@127.0.0.1/x",
            "JENGA_NAMESPACE": namespace,
        },
        wait_seconds=0,
    )
    set_settings(settings)
    set_default_registry(registry)
    from worker import guarded

    class Probe(guarded.GuardedTask):
        name = "bench.guard_probe"

    task = Probe()

    def through_guard():
        with task.guard("bench-svc", defer=False):
            return None

    through_guard()  # first use reads the shared state and the limit
    time.sleep(0.3)
    results.append(
        ("ours: GuardedTask.guard() = breaker + limiter slot", per_call(through_guard, calls))
    )
    limit = guarded.limit_for("bench-svc")

    def limiter_only():
        lease = limit.try_acquire()
        lease.release(dropped=False, latency=0.0)

    results.append(("  of which the limiter (try_acquire+release)", per_call(limiter_only, calls)))
    registry.close()
    limit.close()
    for key in client.scan_iter(f"*{namespace}*"):
        client.delete(key)
    return results


# --- propagation -----------------------------------------------------------------


def _buffered_record(self, failed, latency=None, admission=bp.ADMITTED, timed_out=False):
    """``SharedBreaker.record`` before issue 17, for the baseline: a failure was buffered
    like a success and only woke the flush thread."""
    if admission.probe is not None or self.registry.fallback:
        return _synchronous_record(self, failed, latency, admission, timed_out)
    weight = self.policy.timeout_weight if timed_out else 1
    with self._lock:
        first = not self._pending.calls
        self._pending = self._pending.plus(failed, False, weight)
    if first:
        self.registry.mark_pending(self)
    if failed:
        self.registry.wake()


_synchronous_record = SharedBreaker.record


def _failing_service(calls):
    calls.append(time.time())
    time.sleep(0.002)  # the failing service answers in 2 ms
    raise ConnectionError("down")


def _attempt_for(kind, namespace, name, client, calls):
    """One call through breaker ``kind``: False when refused, without reaching the service."""
    if kind == "pybreaker":
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED,
            redis.Redis.from_url(REDIS_URL),
            namespace=f"{namespace}:{name}",
        )
        pyb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60, state_storage=storage)

        def attempt():
            before = len(calls)
            try:
                pyb.call(_failing_service, calls)
            except pybreaker.CircuitBreakerError:
                # raised for a refusal and for the failure that trips the breaker
                return len(calls) > before
            except ConnectionError:
                pass
            return True

        return attempt, None
    if kind == "circuitbreaker":
        local = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=60, name=name)
        admit = lambda: not local.opened  # noqa: E731
        record = lambda: local._CircuitBreaker__call_failed()  # noqa: E731
        registry = None
    else:
        if kind == "buffered":  # in this forked child only
            SharedBreaker.record = _buffered_record
            breaker_module._COUNTING = bp.CLOSED  # no Redis admit while failures are counted
        registry = BreakerRegistry(
            client,
            namespace,
            bp.BreakerPolicy(failure_threshold=5, failure_rate=0, open_seconds=60),
        ).start()
        breaker = registry.breaker(name)
        admit = lambda: breaker.admit().allowed  # noqa: E731
        record = lambda: breaker.record(True)  # noqa: E731

    def attempt():
        if not admit():
            return False
        try:
            _failing_service(calls)
        except ConnectionError:
            record()
        return True

    return attempt, registry


def _caller(namespace, name, kind, start_at, results):
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    calls = []  # wall-clock start of each call that reached the service
    attempt, registry = _attempt_for(kind, namespace, name, client, calls)
    while time.time() < start_at:
        time.sleep(0.001)
    refused_at = None
    deadline = time.time() + 5
    while time.time() < deadline:
        if not attempt():
            refused_at = time.time()
            break
    results.put((refused_at, calls))
    if registry is not None:
        registry.close()


def bench_propagation(processes: int, rounds: int, kind: str, namespace: str):
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ctx = mp.get_context("fork")
    delays, after_trip, reached = [], [], []
    for r in range(rounds):
        name = f"prop-{r}-{uuid.uuid4().hex[:6]}"
        queue = ctx.Queue()
        start_at = time.time() + 0.5
        procs = [
            ctx.Process(target=_caller, args=(namespace, name, kind, start_at, queue))
            for _ in range(processes)
        ]
        for p in procs:
            p.start()
        outcomes = [queue.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(10)
        all_calls = [c for _, calls in outcomes for c in calls]
        reached.append(len(all_calls))
        if kind in ("ours", "buffered"):
            tripped_at = float(client.hget(RedisKeys(namespace).breaker(name), "changed_at"))
        else:
            # the first refusal anywhere (circuitbreaker: the first process to trip its own)
            tripped_at = min(refused for refused, _ in outcomes)
        delays += [refused - tripped_at for refused, _ in outcomes]
        after_trip.append(sum(1 for c in all_calls if c > tripped_at))
    for key in client.scan_iter(f"*{namespace}*"):
        client.delete(key)
    return delays, after_trip, reached


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--processes", type=int, default=8)
    args = parser.parse_args()
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    print(
        f"cores: {os.cpu_count()}\n\n"
        f"1. per-call overhead, closed breaker (best of 5 x {args.calls} calls)\n"
    )
    print("| path | µs per call |\n|---|---|")
    for label, micros in bench_overhead(args.calls, namespace):
        print(f"| {label} | {micros:.2f} |")
    print(
        f"\n3. propagation: {args.processes} processes, {args.rounds} rounds,"
        " threshold 5 consecutive failures\n"
    )
    print(
        "| breaker | trip -> refusal median | p99 | max | calls after the trip (mean/round)"
        " | calls that reached the failing service (mean/round) |"
    )
    print("|---|---|---|---|---|---|")
    kinds = (
        ("circuitbreaker", "per-process circuitbreaker (baseline)"),
        ("pybreaker", "pybreaker + CircuitRedisStorage (baseline)"),
        ("buffered", "ours before issue 17: failures buffered (baseline)"),
        ("ours", "ours: failures recorded at once"),
    )
    for kind, label in kinds:
        delays, after, reached = bench_propagation(args.processes, args.rounds, kind, namespace)
        print(
            f"| {label} | {statistics.median(delays) * 1000:.1f} ms | {p99(delays) * 1000:.1f} ms"
            f" | {max(delays) * 1000:.1f} ms | {statistics.mean(after):.1f}"
            f" | {statistics.mean(reached):.1f} ({min(reached)}-{max(reached)}) |"
        )


if __name__ == "__main__":
    main()
