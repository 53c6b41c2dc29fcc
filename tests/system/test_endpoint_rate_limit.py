"""A promised rate end to end (API, worker, beat, a local receiver): a backlog posted at
once to an endpoint with ``rate_limit`` reaches it spaced at that rate, in slots shared
through Redis, every message exactly once, while another endpoint's messages go at once.
The horizon is the shortest allowed (1 s), so most of the backlog is held back by the
one-statement wait (``RATE_PARK``) as well as by reserved slots (``RESERVE``)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest

from common.delivery.rate_slots import burst_for
from tests.support.receiver import WebhookReceiver
from tests.support.servers import wait_for
from tests.support.stack import (
    AUTH,
    create_endpoint,
    fresh_database,
    send,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)

pytestmark = pytest.mark.slow

RATE = 10
BACKLOG = 60
# A claim may come this much before its slot (CLAIM_ONE's allowance for clock skew), and
# the test's clock and Redis's may disagree by a little more.
EARLY = 0.3


def test_a_backlog_reaches_its_receiver_at_the_promised_rate(broker_env, redis_client):
    arrivals: dict[str, list[float]] = {"limited": [], "free": []}
    lock = threading.Lock()

    def respond_as(name: str):
        def respond(seen) -> int:
            with lock:
                arrivals[name].append(time.monotonic())
            return 200

        return respond

    with (
        ExitStack() as stack,
        WebhookReceiver() as limited_receiver,
        WebhookReceiver() as free_receiver,
    ):
        database_url = stack.enter_context(fresh_database())
        env = stack_env(broker_env, database_url, DELIVERY_RATE_HORIZON_SECONDS="1")
        client = start_api(stack, env)
        worker = start_worker(stack, env)
        start_beat(stack, env)
        limited = create_endpoint(client, limited_receiver)
        free = create_endpoint(client, free_receiver)
        limited_receiver.respond = respond_as("limited")
        free_receiver.respond = respond_as("free")

        changed = client.patch(
            f"/v1/endpoints/{limited['id']}", json={"rate_limit": RATE}, headers=AUTH
        )
        assert changed.status_code == 200 and changed.json()["rate_limit"] == RATE

        posted_at = time.monotonic()  # before the first slot was taken
        sent = [send(client, limited["id"], {"n": n})["id"] for n in range(BACKLOG)]
        also = [send(client, free["id"], {"n": n})["id"] for n in range(10)]

        wait_for(
            lambda: limited_receiver.accepted_ids() >= set(sent),
            60,
            interval=0.2,
            what="the whole backlog delivered",
        )
        wait_for(lambda: free_receiver.accepted_ids() >= set(also), 30, what="the other endpoint")

        # Every message exactly once: waiting for a slot is never an attempt.
        assert all(len(requests) == 1 for requests in limited_receiver.by_id().values())
        assert len(limited_receiver.requests) == BACKLOG
        shown = client.get(f"/v1/messages/{sent[-1]}", headers=AUTH).json()
        assert shown["status"] == "delivered" and shown["attempt_count"] == 1

        limited_times = sorted(arrivals["limited"])
        burst = burst_for(RATE)
        # Never faster than the slots, however loaded the machine (load only delays): from
        # a full bucket at posted_at, the k-th slot is at least (k - burst) / RATE later.
        for k, arrived in enumerate(limited_times, start=1):
            assert arrived >= posted_at + (k - burst) / RATE - EARLY, (k, arrived - posted_at)
        # The other endpoint did not queue behind the limited one's backlog.
        assert max(arrivals["free"]) < limited_times[-1]
        # Both ways of waiting ran: slots reserved ahead and the backlog held back.
        output = worker.output()
        assert "delivery.rate_parked" in output
        assert redis_client.exists(f"{{{env['JENGA_NAMESPACE']}}}:rate:{limited['id']}")
