"""GuardedTask benchmarks 2 and 4, against a real worker subprocess.

2. Throughput: N no-op tasks through ``GuardedTask`` (static service, breaker +
   limiter) against N plain Celery tasks, same worker (prefork, 2 processes),
   alternating, 3 rounds. Tasks are queued first and then the worker is told to
   consume (``add_consumer``), so the figure is the worker's, not the producer's.
4. Outage: half the tasks call a service that hangs (client timeout 1 s), the
   other half a healthy one; how fast the healthy half completes without and
   with the breaker (threads pool, 4 slots).

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_guarded [--tasks 2000] [--outage-tasks 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import redis
from celery import Celery

from common.config import load_settings
from tests.support.http_server import FakeHTTPServer, Reply, Request
from tests.support.servers import JengaProcess, jenga_env, wait_for
from worker.celeryconfig import celery_config

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def start_worker(env: dict, pool: list[str], node: str) -> JengaProcess:
    worker = JengaProcess.celery(
        "worker",
        *pool,
        "--without-mingle",
        "--without-gossip",
        "-n",
        node,
        "-Q",
        f"{env['JENGA_NAMESPACE']}.default",
        "-I",
        "bench.bench_guarded_tasks",
        "--loglevel=WARNING",
        env=jenga_env(**env),
        name="bench-worker",
    ).start()
    wait_for(lambda: "ready" in worker.output() or not worker.alive(), 60, interval=0.2)
    time.sleep(1.0)
    return worker


def drain(
    producer: Celery, client: redis.Redis, node: str, queue: str, counter: str, expected: int
) -> float:
    reply = producer.control.add_consumer(queue, destination=[node], reply=True, timeout=5)
    assert reply, "worker did not answer add_consumer"
    started = time.perf_counter()
    wait_for(
        lambda: int(client.get(counter) or 0) >= expected,
        600,
        interval=0.01,
        what=f"{expected} tasks",
    )
    elapsed = time.perf_counter() - started
    producer.control.cancel_consumer(queue, destination=[node], reply=True, timeout=5)
    return elapsed


def bench_throughput(n: int, base_env: dict) -> dict[str, list[float]]:
    env = {**base_env, "JENGA_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}"}
    settings = load_settings(env, wait_seconds=0)
    node = f"bench-{uuid.uuid4().hex[:6]}@localhost"
    worker = start_worker(env, ["-P", "prefork", "-c", "2"], node)
    producer = Celery("bench-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    rates: dict[str, list[float]] = {"plain": [], "guarded": []}
    try:
        for round_ in range(3):
            for kind, task in (("plain", "bench.plain_noop"), ("guarded", "bench.guarded_noop")):
                queue = f"{settings.jenga_namespace}.bench-{kind}-{round_}"
                counter = f"{settings.jenga_namespace}:bench:{kind}:{round_}"
                with producer.producer_or_acquire() as pub:
                    for _ in range(n):
                        producer.send_task(task, args=[counter], queue=queue, producer=pub)
                rates[kind].append(n / drain(producer, client, node, queue, counter, n))
    finally:
        worker.stop()
        for key in client.scan_iter(f"*{settings.jenga_namespace}*"):
            client.delete(key)
    return rates


class DelayedService(FakeHTTPServer):
    """Answers 200 after ``delay`` seconds: a hanging service, or with 0 a healthy one."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def answer(self, request: Request) -> Reply:
        time.sleep(self.delay)
        return Reply(200, body="")


def bench_outage(m: int, base_env: dict) -> dict[bool, float]:
    hanging, healthy = DelayedService(5.0).start(), DelayedService(0.0).start()
    env = {
        **base_env,
        "JENGA_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
        "BREAKER_FAILURE_THRESHOLD": "5",
        "BREAKER_FAILURE_RATE": "0",
        "BREAKER_OPEN_SECONDS": "60",
        "BREAKER_OPEN_MAX_SECONDS": "60",
    }
    settings = load_settings(env, wait_seconds=0)
    node = f"bench-{uuid.uuid4().hex[:6]}@localhost"
    worker = start_worker(env, ["-P", "threads", "-c", "4"], node)
    producer = Celery("bench-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    rates = {}
    try:
        for guarded in (False, True):
            queue = f"{settings.jenga_namespace}.outage-{guarded}"
            key = f"{settings.jenga_namespace}:bench:outage:{guarded}"
            with producer.producer_or_acquire() as pub:
                for _ in range(m):
                    producer.send_task(
                        "bench.outage_call",
                        args=[hanging.url, "hang", key, guarded, 1.0],
                        queue=queue,
                        producer=pub,
                    )
                    producer.send_task(
                        "bench.outage_call",
                        args=[healthy.url, "healthy", key, guarded, 1.0],
                        queue=queue,
                        producer=pub,
                    )
            rates[guarded] = m / drain(producer, client, node, queue, f"{key}:healthy", m)
    finally:
        worker.stop()
        hanging.stop()
        healthy.stop()
        for key in client.scan_iter(f"*{settings.jenga_namespace}*"):
            client.delete(key)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--outage-tasks", type=int, default=40)
    args = parser.parse_args()
    base_env = {
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": "postgresql://bench@127.0.0.1:5432/postgres",
        "CONFIG_WAIT_SECONDS": "0",
    }
    print(f"cores: {os.cpu_count()}")
    rates = bench_throughput(args.tasks, base_env)
    plain, guarded = statistics.mean(rates["plain"]), statistics.mean(rates["guarded"])
    print(f"\n2. throughput, {args.tasks} no-op tasks x 3 rounds, prefork -c 2\n")
    print("| tasks | tasks/s (rounds) | mean |\n|---|---|---|")
    plain_rounds = ", ".join(f"{r:.0f}" for r in rates["plain"])
    guarded_rounds = ", ".join(f"{r:.0f}" for r in rates["guarded"])
    print(f"| plain Celery (baseline) | {plain_rounds} | {plain:.0f} |")
    print(f"| GuardedTask | {guarded_rounds} | {guarded:.0f} ({guarded / plain:.2f}x) |")
    outage = bench_outage(args.outage_tasks, base_env)
    print(
        f"\n4. outage: {args.outage_tasks} tasks to a hanging service (timeout 1 s)"
        f" + {args.outage_tasks} to a healthy one, threads -c 4\n"
    )
    print("| | healthy tasks/s |\n|---|---|")
    print(f"| no breaker (baseline) | {outage[False]:.1f} |")
    print(f"| breaker (threshold 5) | {outage[True]:.1f} ({outage[True] / outage[False]:.1f}x) |")


if __name__ == "__main__":
    main()
