"""The fault run: 2,000 messages through the API while the receiver fails half
its requests, one worker is SIGKILLed and PostgreSQL is killed and restarted.
Every accepted message must end delivered (or failed exactly where the retry
schedule says so), none missing; a message is delivered twice only across a
crash, and always with the same webhook-id."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import psycopg
import pytest

from tests.support.receiver import Reply, WebhookReceiver
from tests.support.servers import wait_for
from tests.support.stack import (
    AUTH,
    create_endpoint,
    durable_url,
    migrate_database,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)

pytestmark = pytest.mark.slow

MESSAGES = 2000
SCHEDULE = "100ms,200ms,200ms,300ms,300ms,500ms,500ms,500ms,500ms,500ms,500ms"  # 12 attempts


REFUSED: list[int] = []  # 503s seen: proof the run really hit the outage


def post_until_accepted(client: httpx.Client, endpoint_id: str, seq: int, deadline: float) -> str:
    """POST with an Idempotency-Key, retrying 503s and dropped connections as a
    careful client does; returns the id of the accepted message."""
    body = {"endpoint_id": endpoint_id, "event_type": "fault.run", "payload": {"seq": seq}}
    headers = {**AUTH, "Idempotency-Key": f"fault-{seq}"}
    while time.monotonic() < deadline:
        try:
            response = client.post("/v1/messages", json=body, headers=headers)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 202:
            return response.json()["id"]
        assert response.status_code == 503, response.text  # anything else is a bug
        assert response.headers.get("Retry-After")
        REFUSED.append(seq)
        time.sleep(0.2)
    raise AssertionError(f"message {seq} never accepted")


def test_fault_run_loses_nothing(broker_env, postgres_server, redis_client):
    database_url = durable_url(postgres_server)
    migrate_database(database_url)
    rng = random.Random(6)
    rng_lock = threading.Lock()

    def respond(seen):
        with rng_lock:
            fail = rng.random() < 0.5
        return Reply(500, body="flaky") if fail else Reply(200)

    with ExitStack() as stack, WebhookReceiver() as receiver:
        receiver.respond = respond
        env = stack_env(
            broker_env,
            database_url,
            DELIVERY_RETRY_SCHEDULE=SCHEDULE,
            DELIVERY_RETRY_JITTER="0.2",
            DELIVERY_TIMEOUT_SECONDS="3",
            DELIVERY_CONNECT_TIMEOUT_SECONDS="1",
            DELIVERY_REDISPATCH_SECONDS="10",
            DELIVERY_DISPATCH_INTERVAL_SECONDS="0.5",
            # Not what this test is about: a 50% failing receiver would (rightly) open the
            # breaker and shrink the AIMD limit; keep both out of the way.
            BREAKER_FAILURE_THRESHOLD="0",
            BREAKER_FAILURE_RATE="0",
            LIMIT_MIN="50",
            LIMIT_INITIAL="50",
        )
        client = start_api(stack, env)
        victim = start_worker(stack, env, "victim", concurrency=6)
        start_worker(stack, env, "survivor", concurrency=6)
        start_beat(stack, env)
        endpoint = create_endpoint(client, receiver)

        accepted: dict[int, str] = {}
        deadline = time.monotonic() + 150
        started = time.monotonic()

        def post(seq: int) -> None:
            accepted[seq] = post_until_accepted(client, endpoint["id"], seq, deadline)

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(post, seq) for seq in range(MESSAGES)]
            wait_for(lambda: len(receiver.requests) >= 300, 60, what="deliveries under way")
            victim.kill()  # SIGKILL, with tasks reserved and deliveries in flight
            wait_for(lambda: len(accepted) >= 1000, 90, what="half the messages accepted")
            postgres_server.stop()  # SIGKILL: a crash, mid-run
            time.sleep(1.0)  # the outage: API answers 503, workers cannot claim or record
            postgres_server.start()
            for future in futures:
                future.result()
        posted_in = time.monotonic() - started

        assert len(accepted) == MESSAGES and len(set(accepted.values())) == MESSAGES
        assert REFUSED, "the API never answered 503: the outage did not overlap the posting"

        def unsettled() -> int:
            with psycopg.connect(database_url) as conn:
                return conn.execute(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
                ).fetchone()[0]

        wait_for(
            lambda: unsettled() == 0, 150, interval=1, what="every message delivered or failed"
        )
        elapsed = time.monotonic() - started

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT message_id, status, attempt_count FROM webhook_deliveries"
            ).fetchall()
            attempts = conn.execute(
                "SELECT d.message_id, array_agg(a.status_code ORDER BY a.number)"
                " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
                " GROUP BY 1"
            ).fetchall()
        status = {row[0]: row[1] for row in rows}
        codes = dict(attempts)

        # None missing: every accepted message is stored, and nothing else is.
        assert set(status) == set(accepted.values())
        delivered = {m for m, s in status.items() if s == "delivered"}
        failed = {m for m, s in status.items() if s == "failed"}
        assert delivered | failed == set(status)

        # Delivered means the receiver answered 2xx to that webhook-id.
        assert delivered <= receiver.accepted_ids()
        # Failed only where the schedule says so: every attempt of the round failed.
        attempts_allowed = len(SCHEDULE.split(",")) + 1
        for message_id in failed:
            assert len(codes[message_id]) == attempts_allowed and 200 not in codes[message_id], (
                message_id
            )

        # Signatures verified (standardwebhooks) on every request the receiver got.
        unverified = [
            (r.webhook_id, r.headers, r.raw[:200]) for r in receiver.requests if not r.verified
        ]
        assert unverified == []
        # A payload is only ever sent under its own message's webhook-id.
        ids_per_seq: dict[int, set[str]] = {}
        for r in receiver.requests:
            ids_per_seq.setdefault(r.body["data"]["seq"], set()).add(r.webhook_id)
        assert all(ids == {accepted[seq]} for seq, ids in ids_per_seq.items())
        # Duplicates (2xx twice) only across a crash: at most what was in flight then
        # (the victim's 6 threads, and both workers' deliveries when PostgreSQL died).
        duplicates = [
            m for m, got in receiver.by_id().items() if sum(200 <= r.status < 300 for r in got) > 1
        ]
        assert len(duplicates) <= 30, duplicates

        print(
            f"\nfault run: {MESSAGES} messages accepted in {posted_in:.1f}s,"
            f" all settled after {elapsed:.1f}s; "
            f"{len(delivered)} delivered, {len(failed)} failed, {len(receiver.requests)} requests, "
            f"{len(duplicates)} duplicate deliveries, {len(REFUSED)} POSTs refused with 503"
        )
