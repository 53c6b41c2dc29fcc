"""Benchmark: what publisher confirms cost the API's publish on RabbitMQ.

    PYTHONPATH=. .venv/bin/python -m bench.bench_publish_confirm [--messages 2000] [--rounds 2]

The API's publisher (``common.broker.publisher``) sends ``--messages`` delivery-sized tasks
one at a time to a queue of its own on the local RabbitMQ (``TEST_RABBITMQ_URL``), with
confirms off (the baseline) and on, alternating ``--rounds`` times in the same run; the
queue is deleted afterwards. Reported per round: publishes a second and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import time
import uuid

from kombu import Connection

from common.broker import publisher
from common.config import load_settings
from tests.support.brokers import RABBITMQ_URL


def run(confirm: bool, settings, queue: str, messages: int) -> tuple[float, float, float]:
    sender = publisher(settings, "bench-confirm", confirm=confirm)
    bounds = {"timeout": 5, "confirm_timeout": 5}
    try:
        sender.send_task("bench.noop", args=("warm",), queue=queue, retry=False, **bounds)
        latencies = []
        for n in range(messages):
            started = time.perf_counter()
            sender.send_task(
                "bench.noop", args=(f"dlv_{n:032d}",), queue=queue, retry=False, **bounds
            )
            latencies.append(time.perf_counter() - started)
    finally:
        sender.close()
    latencies.sort()
    return (
        len(latencies) / sum(latencies),
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "BROKER_URL": RABBITMQ_URL,
            "JENGA_NAMESPACE": namespace,
        },
        wait_seconds=0,
    )
    queue = f"{namespace}.deliveries"
    print("| round | confirms | publishes/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    try:
        for round_ in range(1, args.rounds + 1):
            for confirm in (False, True):
                rate, p50, p99 = run(confirm, settings, queue, args.messages)
                print(
                    f"| {round_} | {'on' if confirm else 'off'} | {rate:,.0f} | {p50:.2f} |"
                    f" {p99:.2f} |",
                    flush=True,
                )
    finally:
        with Connection(RABBITMQ_URL, connect_timeout=5) as conn:
            conn.default_channel.queue_delete(queue)


if __name__ == "__main__":
    main()
