"""Benchmark 5: the fleet-wide AIMD limit against fixed limits, and the
per-call cost of ``try_acquire`` + ``release``.

A local service (bench/overload_service.py) serves C requests at a time, 20 ms
each, and answers 503 past that. A "fleet" of client processes (each with its
own SharedLimit over the same Redis, many threads each) calls it as fast as the
limit lets them (a caller that got a 503 pauses ``--error-pause``, 20 ms, as
a deferred delivery would), for each strategy: AIMD (starting at 4C) and fixed limits C/2,
C and 4C. Reported: goodput (200s per second), error rate (503s / requests
sent), p99 latency of sent requests, and for AIMD the time until the limit
first came down to C and its mean afterwards.

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_aimd [--capacity 8] [--seconds 6] [--processes 2] [--threads 16]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import statistics
import threading
import time
import uuid
from urllib.parse import urlsplit

import redis

from bench.overload_service import OverloadService
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.guards.limit.store import list_limits

SERVICE = "overload"


def redis_url() -> str:
    return (
        os.environ.get("REDIS_URL")
        or os.environ.get("TEST_REDIS_URL")
        or "redis://127.0.0.1:6379/0"
    )


def client_process(
    url: str, namespace: str, options: dict, threads: int, seconds: float, error_pause: float, out
) -> None:
    """One fleet member: ``threads`` callers sharing one SharedLimit."""
    client = redis.Redis.from_url(redis_url(), decode_responses=True)
    limit = SharedLimit(client, namespace, SERVICE, AIMDOptions(**options), lease_ttl=5.0)
    parts = urlsplit(url)
    began = time.time()
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"ok": 0, "errors": 0, "refused": 0}
    events: list[tuple[float, bool, float]] = []  # (wall time, ok, latency)

    def caller() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        ok = errors = refused = 0
        mine: list[tuple[float, bool, float]] = []
        while time.monotonic() < deadline:
            lease = limit.try_acquire()
            if lease is None:
                refused += 1
                time.sleep(0.002)  # a real task would be deferred; don't spin
                continue
            started = time.perf_counter()
            try:
                conn.request("GET", parts.path or "/")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
            latency = time.perf_counter() - started
            lease.release(dropped=status != 200, latency=latency)
            mine.append((time.time(), status == 200, latency))
            if status == 200:
                ok += 1
            else:
                errors += 1
                if error_pause:
                    time.sleep(error_pause)  # the task is deferred, the worker moves on
        conn.close()
        with lock:
            totals["ok"] += ok
            totals["errors"] += errors
            totals["refused"] += refused
            events.extend(mine)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    limit.close()
    out.put({**totals, "events": events, "began": began, "ended": time.time()})


def run_strategy(name: str, options: AIMDOptions, capacity: int, args) -> dict:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    series: list[tuple[float, int]] = []
    watcher = redis.Redis.from_url(redis_url(), decode_responses=True)
    with OverloadService(capacity, args.service_time) as service:
        procs = [
            ctx.Process(
                target=client_process,
                args=(
                    service.url,
                    namespace,
                    options.__dict__,
                    args.threads,
                    args.seconds,
                    args.error_pause,
                    out,
                ),
            )
            for _ in range(args.processes)
        ]
        for proc in procs:
            proc.start()
        # Spawned processes take a moment to import; time starts at the first slot.
        started = None
        while any(p.is_alive() for p in procs) and (
            started is None or time.monotonic() - started < args.seconds + 5
        ):
            views = list_limits(watcher, namespace)
            if views:
                now = time.monotonic()
                started = started or now
                series.append((now - started, views[0]["limit"], time.time()))
            time.sleep(0.02)
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
    for key in watcher.scan_iter(f"*{namespace}*"):
        watcher.delete(key)
    watcher.close()

    ok = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    events = [e for r in results for e in r["events"]]
    latencies = sorted(e[2] for e in events)
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    span = max(r["ended"] for r in results) - min(r["began"] for r in results)
    row = {
        "name": name,
        "goodput": ok / span,
        "errors_per_s": errors / span,
        "error_rate": errors / max(1, ok + errors),
        "p99_ms": p99 * 1000,
        "sent": ok + errors,
        "refused": sum(r["refused"] for r in results),
    }
    if options.min != options.max:
        converged = next(((t, wall) for t, value, wall in series if value <= capacity), None)
        after = [value for t, value, _ in series if converged is not None and t >= converged[0]]
        row["converge_s"] = converged[0] if converged else None
        if converged:
            steady = [ok for wall, ok, _ in events if wall >= converged[1]]
            row["steady_error_rate"] = steady.count(False) / max(1, len(steady))
            row["steady_goodput"] = steady.count(True) / max(
                1e-9, max(r["ended"] for r in results) - converged[1]
            )
        row["limit_mean_after"] = statistics.fmean(after) if after else None
        row["limit_range_after"] = (min(after), max(after)) if after else None
    return row


def per_call_cost(iterations: int) -> dict:
    """Microseconds per try_acquire + release, with baselines measured alongside."""
    client = redis.Redis.from_url(redis_url(), decode_responses=True)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    limit = SharedLimit(client, namespace, "cost", AIMDOptions(initial=64, min=64, max=64))
    figures = {}

    limit.try_acquire().release(False, 0.0)  # first slot: one round trip
    started = time.perf_counter()
    for _ in range(iterations):
        limit.try_acquire().release(False, 0.001)
    figures["shared_limit_us"] = (time.perf_counter() - started) / iterations * 1e6

    semaphore = threading.BoundedSemaphore(64)
    started = time.perf_counter()
    for _ in range(iterations):
        semaphore.acquire()
        semaphore.release()
    figures["semaphore_us"] = (time.perf_counter() - started) / iterations * 1e6

    # Four threads on one limiter: the cost of the shared lock under contention.
    def spin(n: int) -> None:
        for _ in range(n):
            lease = limit.try_acquire()
            if lease is not None:
                lease.release(False, 0.001)

    threads = [threading.Thread(target=spin, args=(iterations // 4,)) for _ in range(4)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    figures["shared_limit_4_threads_us"] = (time.perf_counter() - started) / iterations * 1e6

    rounds = max(1, iterations // 100)
    started = time.perf_counter()
    for _ in range(rounds):
        client.ping()
    figures["redis_ping_us"] = (time.perf_counter() - started) / rounds * 1e6

    held = limit.try_acquire()
    started = time.perf_counter()
    for _ in range(rounds):
        limit.sync()  # the Lua script's round trip, what a per-call lease would pay twice
    figures["lua_sync_us"] = (time.perf_counter() - started) / rounds * 1e6
    held.release(False, 0.0)

    limit.close()
    for key in client.scan_iter(f"*{namespace}*"):
        client.delete(key)
    client.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--capacity", type=int, default=8, help="C: requests the service serves at once"
    )
    parser.add_argument("--service-time", type=float, default=0.02, help="seconds per request")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="duration of each strategy's run"
    )
    parser.add_argument("--processes", type=int, default=2, help="client processes (fleet members)")
    parser.add_argument("--threads", type=int, default=16, help="caller threads per process")
    parser.add_argument(
        "--error-pause",
        type=float,
        default=0.02,
        help="seconds a caller waits after a 503 before its next call (0: hammer)",
    )
    parser.add_argument("--iterations", type=int, default=200_000, help="per-call cost loop length")
    args = parser.parse_args()
    c = args.capacity

    print(
        f"machine: {os.cpu_count()} cores; C={c}, {args.service_time * 1000:.0f} ms per request, "
        f"{args.processes} processes x {args.threads} threads, {args.seconds:.0f} s per strategy, "
        f"pause after a 503: {args.error_pause * 1000:.0f} ms"
    )
    cost = per_call_cost(args.iterations)
    print("per-call cost (µs): " + ", ".join(f"{k}={v:.2f}" for k, v in cost.items()))

    strategies = [
        (
            "AIMD (start 4C)",
            AIMDOptions(
                initial=4 * c,
                min=1,
                max=8 * c,
                backoff_ratio=0.9,
                step=1,
                latency_target=5 * args.service_time,
                window=0.1,
            ),
        ),
        (
            "AIMD (start 4C, backoff 0.5)",
            AIMDOptions(
                initial=4 * c,
                min=1,
                max=8 * c,
                backoff_ratio=0.5,
                step=1,
                latency_target=5 * args.service_time,
                window=0.1,
            ),
        ),
        ("fixed C/2", AIMDOptions(initial=max(1, c // 2), min=max(1, c // 2), max=max(1, c // 2))),
        ("fixed C", AIMDOptions(initial=c, min=c, max=c)),
        ("fixed 4C", AIMDOptions(initial=4 * c, min=4 * c, max=4 * c)),
    ]
    print(f"ideal goodput: {c / args.service_time:.0f}/s")
    print(
        "| strategy | goodput (req/s) | error rate | errors/s | p99 latency (ms) | sent"
        " | refused locally | converge to <= C"
        " | after convergence: limit mean (range), error rate, goodput |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, options in strategies:
        row = run_strategy(name, options, c, args)
        conv = row.get("converge_s")
        conv_text = (
            "—" if "converge_s" not in row else (f"{conv:.2f} s" if conv is not None else "never")
        )
        after = "—"
        if row.get("limit_mean_after") is not None:
            after = (
                f"{row['limit_mean_after']:.1f}"
                f" ({row['limit_range_after'][0]}–{row['limit_range_after'][1]}), "
                f"{row['steady_error_rate'] * 100:.1f} %, {row['steady_goodput']:.0f}/s"
            )
        print(
            f"| {row['name']} | {row['goodput']:.0f} | {row['error_rate'] * 100:.1f} %"
            f" | {row['errors_per_s']:.0f} | {row['p99_ms']:.1f} | "
            f"{row['sent']} | {row['refused']} | {conv_text} | {after} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
