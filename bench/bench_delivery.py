"""Benchmark: webhook deliveries per second end to end, against no-op Celery
tasks per second on the same broker, pool, concurrency and machine, in the
same run; plus API accept latency (p50/p99).

    .venv/bin/python -m bench.bench_delivery [--messages 2000] [--concurrency 16] [--rounds 3]

Two baselines, because "plain Celery" hides a choice:

* bare Celery: a one-task app with Celery's defaults (no task events, no
  bootsteps), ``celery -A bench.bench_delivery worker -P threads -c C``;
* the Jenga worker: the very worker process that delivers (``celery -A worker
  worker``, same options, same queue, task events on for Flower, heartbeat and
  dependency monitors running), given a no-op task instead of a delivery. This
  is the fair one: everything but the delivery itself is the same.

Every run works the same way: N tasks (messages) are queued first, then one
worker (``-P threads -c C``) starts. No-op tasks (one Redis INCR each) are timed
from the first to the last completion; deliveries from the first attempt's
start to the last attempt's end as recorded in ``webhook_attempts`` (the
message ``delivered`` in PostgreSQL after the local receiver answered 200).
Accept latency is measured while queueing the messages through the API (4
client threads).

This file is also the bare baseline's Celery app (``celery -A bench.bench_delivery``),
and the Jenga worker imports it (``-I bench.bench_delivery``) for ``bench.jenga_noop``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from celery import Celery, shared_task

from common.redis.keys import RedisKeys

# --- the bare baseline's worker app: one no-op task, Celery's defaults (no task events),
# acks and prefetch as Jenga's, the broker keys of the run's JENGA_NAMESPACE ------------
noop_app = Celery("bench_noop", set_as_current=False)
noop_app.conf.update(
    broker_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    broker_transport_options={
        "global_keyprefix": RedisKeys(os.environ.get("JENGA_NAMESPACE", "bench")).broker_prefix()
    },
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    task_serializer="json",
    accept_content=["json"],
)
app = noop_app


_redis_clients: dict[str, object] = {}


def count_done(counter_key: str) -> None:
    import redis

    url = os.environ["REDIS_URL"]
    client = _redis_clients.get(url) or _redis_clients.setdefault(url, redis.Redis.from_url(url))
    client.incr(counter_key)


@noop_app.task(name="bench.noop")
def noop(counter_key: str) -> None:
    count_done(counter_key)


# Registered on Jenga's app (the current app) when its worker imports this module.
@shared_task(name="bench.jenga_noop", ignore_result=True)
def jenga_noop(counter_key: str) -> None:
    count_done(counter_key)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def time_noops(redis_url: str, counter: str, messages: int) -> float:
    """No-op tasks per second, first completion to last."""
    import redis

    from tests.support.servers import wait_for

    client = redis.Redis.from_url(redis_url)
    try:
        wait_for(
            lambda: int(client.get(counter) or 0) >= 1,
            60,
            interval=0.005,
            what="the first no-op task",
        )
        started = time.monotonic()
        wait_for(
            lambda: int(client.get(counter) or 0) >= messages,
            300,
            interval=0.005,
            what="no-op tasks",
        )
        return (messages - 1) / (time.monotonic() - started)
    finally:
        client.delete(counter)


def sender(redis_url: str, namespace: str) -> Celery:
    """A client that queues tasks by name under the namespace's broker keys (as Jenga's workers
    read them)."""
    client = Celery("bench-sender", set_as_current=False)
    prefix = RedisKeys(namespace).broker_prefix()
    client.conf.update(
        broker_url=redis_url,
        broker_transport_options={"global_keyprefix": prefix},
        task_serializer="json",
    )
    return client


def run_baseline(env: dict[str, str], messages: int, concurrency: int) -> float:
    from tests.support.servers import JengaProcess

    ns = env["JENGA_NAMESPACE"]
    counter = f"{ns}:bench:noop"
    queue = f"{ns}.noop"
    with sender(env["REDIS_URL"], ns) as client:
        for _ in range(messages):
            client.send_task("bench.noop", (counter,), queue=queue)
    worker = JengaProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.bench_delivery",
            "worker",
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "-Q",
            queue,
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
        ],
        env,
        "bench-noop",
    ).start()
    try:
        return time_noops(env["REDIS_URL"], counter, messages)
    finally:
        worker.stop()


def run_jenga_baseline(settings_env: dict[str, str], messages: int, concurrency: int) -> float:
    from tests.support.stack import fresh_database, stack_env, start_worker

    with ExitStack() as stack:
        env = stack_env(settings_env, stack.enter_context(fresh_database()), LOG_LEVEL="INFO")
        ns = env["JENGA_NAMESPACE"]
        counter = f"{ns}:bench:jenga-noop"
        with sender(env["REDIS_URL"], ns) as client:
            for _ in range(messages):
                client.send_task("bench.jenga_noop", (counter,), queue=f"{ns}.deliveries")
        start_worker(stack, env, "bench-jenga-noop", concurrency, *WORKER_EXTRA_ARGS)
        return time_noops(env["REDIS_URL"], counter, messages)


# Both Jenga worker runs import this module, so they differ only in the task they run.
WORKER_EXTRA_ARGS = ("-I", "bench.bench_delivery")


def run_delivery(
    settings_env: dict[str, str], messages: int, concurrency: int
) -> tuple[float, list[float]]:
    import psycopg

    from tests.support.receiver import WebhookReceiver
    from tests.support.servers import wait_for
    from tests.support.stack import (
        AUTH,
        fresh_database,
        stack_env,
        start_api,
        start_beat,
        start_worker,
    )

    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        # The product's dispatch interval, not the tests' quicker one: deliveries here are
        # enqueued by the API.
        env = stack_env(
            settings_env, database_url, LOG_LEVEL="WARNING", DELIVERY_DISPATCH_INTERVAL_SECONDS="1"
        )
        client = start_api(stack, env)
        start_beat(stack, env)
        # The receiver does not verify signatures here (the tests do): its CPU is not ours to count.
        endpoint = client.post("/v1/endpoints", json={"url": receiver.url}, headers=AUTH).json()
        latencies: list[float] = []

        def post(seq: int) -> None:
            started = time.perf_counter()
            response = client.post(
                "/v1/messages",
                headers=AUTH,
                json={
                    "endpoint_id": endpoint["id"],
                    "event_type": "bench.event",
                    "payload": {"seq": seq, "pad": "x" * 200},
                },
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 202, response.text

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(post, range(messages)))

        # One connection for the polling: a new one each time would start a PostgreSQL
        # backend ten times a second, CPU taken from the run being measured.
        poll = stack.enter_context(psycopg.connect(database_url, autocommit=True))

        def delivered() -> int:
            return poll.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
            ).fetchone()[0]

        start_worker(stack, {**env, "LOG_LEVEL": "INFO"}, "bench", concurrency, *WORKER_EXTRA_ARGS)
        wait_for(lambda: delivered() >= messages, 600, interval=0.1, what="deliveries")
        with psycopg.connect(database_url) as conn:
            # First attempt's start to last attempt's end, from the attempts PostgreSQL recorded.
            elapsed = conn.execute(
                "SELECT extract(epoch FROM"
                " max(started_at + duration_ms * interval '1 ms') - min(started_at))"
                " FROM webhook_attempts"
            ).fetchone()[0]
        assert len(receiver.accepted_ids()) == messages
        return messages / float(elapsed), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from tests.support.servers import base_database_url, base_redis_url, jenga_env

    def fresh_settings() -> dict[str, str]:
        """Each run its own namespace: queues, breaker and AIMD limit state start afresh."""
        return {
            "DATABASE_URL": base_database_url(),
            "REDIS_URL": base_redis_url(),
            "JENGA_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
            "CONFIG_WAIT_SECONDS": "0",
        }

    # Rounds interleave the three runs, so that other load on the machine hits all of them alike.
    rounds = []
    latencies: list[float] = []
    for number in range(1, args.rounds + 1):
        bare = run_baseline(jenga_env(**fresh_settings()), args.messages, args.concurrency)
        same_worker = run_jenga_baseline(fresh_settings(), args.messages, args.concurrency)
        rate, accepted = run_delivery(fresh_settings(), args.messages, args.concurrency)
        latencies += accepted
        rounds.append((bare, same_worker, rate))
        print(
            f"round {number}: bare Celery {bare:7.1f} /s, Jenga worker no-op {same_worker:7.1f} /s,"
            f" deliveries {rate:7.1f} /s ({rate / same_worker:.2f}x, {rate / bare:.2f}x)",
            flush=True,
        )
    bare, same_worker, rate = (statistics.median(column) for column in zip(*rounds, strict=True))
    ratio = statistics.median(r / s for _, s, r in rounds)
    ratio_bare = statistics.median(r / b for b, _, r in rounds)
    print(
        f"machine: {os.cpu_count()} cores; {args.messages} tasks/messages;"
        f" worker -P threads -c {args.concurrency}; median of {args.rounds} rounds"
    )
    print(f"baseline: bare Celery no-op tasks       {bare:8.1f} /s")
    print(f"baseline: Jenga worker no-op tasks      {same_worker:8.1f} /s")
    print(
        f"webhook deliveries end to end           {rate:8.1f} /s   ({ratio:.2f}x the Jenga worker's"
        f" no-op rate, {ratio_bare:.2f}x bare Celery's)"
    )
    print(
        f"API accept latency (4 client threads)   p50 {statistics.median(latencies) * 1000:.1f} ms"
        f"   p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
