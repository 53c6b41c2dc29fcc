"""Recover end to end: a receiver fails every attempt until its deliveries are
`failed`, then heals; ``POST …/endpoints/{ep}/recover`` starts a job that beat's tick
advances in the worker, and every failed message is delivered exactly once more, no
sooner than the job's pace allows. Real API, worker and beat processes, on each broker."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timedelta

import pytest

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

FAILED_MESSAGES = 20
RATE = 10  # a second: the 20 recovered deliveries become due over 1.9 s at least


def test_recover_delivers_every_failed_message_exactly_once_more_at_its_pace(
    broker_env, redis_client
):
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            broker_env,
            database_url,
            # Every attempt fails while the receiver is down: no breaker in between.
            BREAKER_FAILURE_THRESHOLD="0",
            BREAKER_FAILURE_RATE="0",
            RECOVER_RATE_PER_SECOND=str(RATE),
        )
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        endpoint = create_endpoint(client, receiver)
        healthy = {"now": False}
        receiver.respond = lambda seen: 200 if healthy["now"] else 500

        sent = [send(client, endpoint["id"], {"n": n}) for n in range(FAILED_MESSAGES)]
        for one in sent:
            assert len(settled(client, one["id"], "failed")["attempts"]) == 3  # 200ms,300ms
        assert receiver.accepted_ids() == set()

        healthy["now"] = True
        since = min(datetime.fromisoformat(one["created_at"]) for one in sent)
        started = client.post(
            f"/v1/endpoints/{endpoint['id']}/recover",
            json={"since": (since - timedelta(seconds=1)).isoformat()},
            headers=AUTH,
        )
        assert started.status_code == 202, started.text
        job = started.json()

        def finished():
            shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).json()
            return shown if shown["status"] in ("done", "failed") else None

        done = wait_for(finished, 30, interval=0.2, what="the recover job")
        assert (done["status"], done["total"], done["done_count"]) == (
            "done",
            FAILED_MESSAGES,
            FAILED_MESSAGES,
        )
        last_started = []
        for one in sent:
            shown = settled(client, one["id"])
            assert [a["status_code"] for a in shown["attempts"]] == [500, 500, 500, 200]
            last_started.append(datetime.fromisoformat(shown["attempts"][-1]["started_at"]))
        # Due 1/RATE apart from the job's first tick: the last one cannot have gone sooner.
        created = datetime.fromisoformat(job["created_at"])
        assert max(last_started) - created >= timedelta(seconds=(FAILED_MESSAGES - 1) / RATE)

        # Exactly once more each.
        seen = receiver.by_id()
        assert {one["id"] for one in sent} == receiver.accepted_ids()
        assert all(len(seen[one["id"]]) == 4 for one in sent)
        assert all(r.verified for requests in seen.values() for r in requests)
        shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).json()
        assert shown["done_count"] == FAILED_MESSAGES
        assert message(client, sent[0]["id"])["status"] == "delivered"
