"""The hostile-receiver zoo through the real stack (API, worker, beat) on both
brokers: each misbehaving receiver (its own loopback address, so its own
breaker) costs one recorded attempt with a clear error, its slot comes back
within the attempt's deadline, and a healthy endpoint's deliveries go on."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from tests.support.hostile import BEHAVIOURS, HostileReceiver
from tests.support.receiver import WebhookReceiver
from tests.support.servers import wait_for
from tests.support.stack import (
    AUTH,
    create_endpoint,
    fresh_database,
    message,
    send,
    settled,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)

pytestmark = pytest.mark.slow

DEADLINE = 2.0
ZOO = [
    "headers trickled",
    "body trickled",
    "1 GB promised, nothing sent",
    "huge headers",
    "reset mid-response",
    "NUL in the body",
    "NUL in a header",
]
HEALTHY = 30


def test_hostile_receivers_cost_one_clear_attempt_each_and_never_stall_the_rest(broker_env):
    with ExitStack() as stack, WebhookReceiver() as healthy:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            broker_env,
            database_url,
            DELIVERY_TIMEOUT_SECONDS=str(DEADLINE),
            DELIVERY_CONNECT_TIMEOUT_SECONDS="1",
            DELIVERY_RETRY_SCHEDULE="1h",  # one attempt each within the test
            TASK_TIME_LIMIT_SECONDS="60",
        )
        client = start_api(stack, env)
        start_worker(stack, env, concurrency=4)
        start_beat(stack, env)
        hostile = {
            name: stack.enter_context(HostileReceiver(BEHAVIOURS[name], host=f"127.0.0.{n + 2}"))
            for n, name in enumerate(ZOO)
        }
        sent = {}
        for name, receiver in hostile.items():
            response = client.post(
                "/v1/endpoints",
                json={"url": receiver.url()},
                headers=AUTH,
            )
            assert response.status_code == 201, response.text
            sent[name] = send(client, response.json()["id"], {"zoo": name})["id"]
        good = create_endpoint(client, healthy)
        started = time.monotonic()
        fine = [send(client, good["id"], {"n": n})["id"] for n in range(HEALTHY)]

        for message_id in fine:
            settled(client, message_id)
        healthy_seconds = time.monotonic() - started

        def attempted(message_id: str):
            shown = message(client, message_id)
            return shown if shown["attempts"] else None

        for name, message_id in sent.items():
            shown = wait_for(lambda m=message_id: attempted(m), 60, what=f"{name}'s attempt")
            (attempt,) = shown["attempts"]
            assert attempt["duration_ms"] <= (DEADLINE + 1.5) * 1000, (name, attempt)
            assert attempt["status_code"] is not None or attempt["error"], (name, attempt)
            assert shown["status"] == "pending", (name, shown["status"])  # retried in an hour
        # Seven receivers held at most a deadline each on a 4-slot worker.
        assert healthy_seconds < 30, f"healthy deliveries took {healthy_seconds:.1f}s"
        assert len(healthy.requests) == HEALTHY
