"""Webhook delivery end to end: API process -> PostgreSQL -> broker -> worker
-> a local receiver that verifies Standard Webhooks signatures with the
``standardwebhooks`` package. Real processes, real servers."""

from __future__ import annotations

import re
from contextlib import ExitStack

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from common.broker import FAN_OUT_DIRECT_MAX
from tests.support.receiver import Reply, WebhookReceiver
from tests.support.servers import wait_for
from tests.support.stack import (
    AUTH,
    create_endpoint,
    fresh_database,
    send,
    settled,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)

pytestmark = pytest.mark.slow


def test_delivered_signed_retried_and_recorded(broker_env, redis_client):
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(broker_env, database_url)
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        endpoint = create_endpoint(client, receiver)

        # First attempt fails with a 500, the retry (from the schedule in PostgreSQL) succeeds.
        receiver.respond = lambda seen: (
            Reply(500, body="boom") if seen.count == 0 else Reply(200, body="thanks")
        )
        sent = send(client, endpoint["id"], {"order": 42}, key="order-42")
        shown = settled(client, sent["id"])

        assert [a["status_code"] for a in shown["attempts"]] == [500, 200]
        assert shown["attempts"][0]["response_excerpt"] == "boom"
        assert shown["attempts"][1]["response_excerpt"] == "thanks"
        assert all(a["duration_ms"] >= 0 and a["started_at"] for a in shown["attempts"])
        requests = receiver.by_id()[sent["id"]]
        assert len(requests) == 2 and all(
            r.verified for r in requests
        )  # standardwebhooks verified both
        assert requests[0].body == requests[1].body  # same bytes, same webhook-id, on every retry
        assert (
            requests[0].body["data"] == {"order": 42} and requests[0].body["type"] == "test.event"
        )

        # Both attempts are counted fleet-wide, by outcome, under the endpoint host's service name.
        def counted(outcome: str) -> bool:
            pattern = (
                rf'jenga_deliveries_total\{{(?=[^}}]*outcome="{outcome}")'
                rf'(?=[^}}]*service="webhook:127.0.0.1")[^}}]*\}} 1\.0'
            )
            return re.search(pattern, client.get("/metrics", headers=AUTH).text) is not None

        wait_for(lambda: counted("retry") and counted("delivered"), 10, what="delivery metrics")

        # Delivered once, at its retry: one end-to-end observation under its application,
        # from the message's creation, so past the first retry delay (200 ms).
        def end_to_end() -> bool:
            text = client.get("/metrics", headers=AUTH).text
            series = 'jenga_delivery_end_to_end_seconds_{}{{application="app_default"{}}} {}'
            return series.format("count", "", "1.0") in text and (
                series.format("bucket", ',le="0.1"', "0.0") in text
            )

        wait_for(end_to_end, 10, what="the end-to-end latency")

        # The same Idempotency-Key again: the same message, and no further delivery.
        assert send(client, endpoint["id"], {"order": 42}, key="order-42")["id"] == sent["id"]

        # A manual retry delivers again, with the same webhook-id.
        retried = client.post(f"/v1/messages/{sent['id']}/retry", headers=AUTH)
        assert retried.status_code == 202
        wait_for(lambda: len(receiver.by_id()[sent["id"]]) == 3, 30, what="the manual redelivery")
        assert settled(client, sent["id"])["attempt_count"] == 3
        assert len(receiver.requests) == 3


def test_schedule_exhausted_retry_after_and_410(broker_env, redis_client):
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            broker_env, database_url, BREAKER_FAILURE_THRESHOLD="0", BREAKER_FAILURE_RATE="0"
        )
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        failing = create_endpoint(client, receiver, "/failing")
        limited = create_endpoint(client, receiver, "/limited")
        gone = create_endpoint(client, receiver, "/gone")

        def respond(seen):
            if seen.path.endswith("/failing"):
                return 503
            if seen.path.endswith("/limited"):
                # Retry-After is honoured over the (much shorter) schedule.
                first = len(receiver.by_id()[seen.webhook_id]) == 1
                return Reply(429, headers={"Retry-After": "2"}) if first else 200
            return 410

        receiver.respond = respond
        failed = send(client, failing["id"], {"n": 1})
        throttled = send(client, limited["id"], {"n": 0})
        dead = send(client, gone["id"], {"n": 2})

        # Two retries in the schedule: three attempts, then failed.
        shown = settled(client, failed["id"], "failed")
        assert [a["status_code"] for a in shown["attempts"]] == [503, 503, 503]

        shown = settled(client, throttled["id"])
        first, second = (a["started_at"] for a in shown["attempts"])
        gap = (_parse(second) - _parse(first)).total_seconds()
        assert gap >= 1.9, f"retried after {gap}s, before Retry-After: 2"

        shown = settled(client, dead["id"], "failed")
        assert [a["status_code"] for a in shown["attempts"]] == [410]  # no retry after 410
        endpoint = client.get(f"/v1/endpoints/{gone['id']}", headers=AUTH).json()
        assert endpoint["disabled"] is True and "410" in endpoint["disabled_reason"]


def test_rotated_secret_signs_beside_the_old_one_for_the_grace_and_custom_headers_go_along(
    broker_env, redis_client
):
    """During a rotation's grace a receiver verifying with either secret (with the
    ``standardwebhooks`` package) accepts each delivery; after a rotation without grace
    the old secrets fail. The endpoint's custom headers reach the receiver."""
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(broker_env, database_url)
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        created = client.post(
            "/v1/endpoints",
            json={"url": receiver.url, "headers": {"Authorization": "Bearer gateway-token"}},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        endpoint, old = created.json(), created.json()["secret"]
        secret_path = f"/v1/endpoints/{endpoint['id']}/secret"
        new = client.post(f"{secret_path}/rotate", json={"grace_seconds": 3600}, headers=AUTH)
        new = new.json()["secret"]

        during = send(client, endpoint["id"], {"n": 1})
        wait_for(lambda: during["id"] in receiver.by_id(), 30, what="the delivery in the grace")
        (seen,) = receiver.by_id()[during["id"]]
        assert seen.headers["authorization"] == "Bearer gateway-token"
        assert len(seen.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(seen.raw, seen.headers)
        Webhook(new).verify(seen.raw, seen.headers)

        newest = client.post(f"{secret_path}/rotate", json={"grace_seconds": 0}, headers=AUTH)
        newest = newest.json()["secret"]
        after = send(client, endpoint["id"], {"n": 2})
        wait_for(lambda: after["id"] in receiver.by_id(), 30, what="the delivery after it")
        (seen,) = receiver.by_id()[after["id"]]
        Webhook(newest).verify(seen.raw, seen.headers)
        for revoked in (old, new):
            with pytest.raises(WebhookVerificationError):
                Webhook(revoked).verify(seen.raw, seen.headers)


def test_one_message_fans_out_to_each_subscribed_endpoint_signed_with_its_secret(
    broker_env, redis_client
):
    """Posted once without an endpoint: each endpoint subscribed to the type gets it once,
    with the same webhook-id, signed with its own secret only; the one filtering other
    types gets nothing; the message reads delivered when every delivery is. Six
    subscribed endpoints: more than FAN_OUT_DIRECT_MAX, so the API publishes one fan-out
    task and the worker turns it into the deliveries."""
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(broker_env, database_url)
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        secrets = {}
        subscriptions = [("/all", None), ("/other", ["other.type"])]
        subscriptions += [(f"/fan{n}", ["test.fan"]) for n in range(5)]
        for path, types in subscriptions:
            created = client.post(
                "/v1/endpoints",
                json={"url": receiver.url + path, "filter_types": types},
                headers=AUTH,
            )
            assert created.status_code == 201, created.text
            secrets[receiver.url_path + path] = created.json()["secret"]

        sent = client.post(
            "/v1/messages", json={"event_type": "test.fan", "payload": {"n": 1}}, headers=AUTH
        )
        assert sent.status_code == 202, sent.text
        sent = sent.json()
        assert len(sent["deliveries"]) == 6 > FAN_OUT_DIRECT_MAX and sent["endpoint_id"] is None
        shown = settled(client, sent["id"])
        assert [d["status"] for d in shown["deliveries"]] == ["delivered"] * 6
        assert shown["attempt_count"] == 6

        seen = {r.path: r for r in receiver.requests}
        assert sorted(seen) == sorted(p for p in secrets if not p.endswith("/other"))
        assert len(receiver.requests) == 6
        for path, request in seen.items():
            assert request.webhook_id == sent["id"]
            Webhook(secrets[path]).verify(request.raw, request.headers)
            for other_path, other in secrets.items():
                if other_path != path:
                    with pytest.raises(WebhookVerificationError):
                        Webhook(other).verify(request.raw, request.headers)


def test_private_destination_refused_at_delivery_time(broker_env, redis_client):
    """An endpoint that was acceptable when created, but whose address is
    refused when the worker delivers (DNS changed, or the policy did)."""
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        api_env = stack_env(broker_env, database_url)
        client = start_api(stack, api_env)
        worker_env = {**api_env, "ALLOW_PRIVATE_DESTINATIONS": "false"}
        start_worker(stack, worker_env)
        start_beat(stack, worker_env)
        endpoint = create_endpoint(client, receiver)
        sent = send(client, endpoint["id"], {"n": 1})
        shown = settled(client, sent["id"], "failed")
        assert len(shown["attempts"]) == 3
        assert all(
            "DestinationRefused" in a["error"] and "loopback" in a["error"]
            for a in shown["attempts"]
        )
        assert receiver.requests == []  # nothing ever reached the private address


def test_message_accepted_while_broker_down_is_delivered_later(
    settings_env, redis_server, redis_client
):
    """The outbox: the API commits, the broker is down so nothing is enqueued;
    once the broker is back, the dispatcher enqueues it and it is delivered."""
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(settings_env, database_url, BROKER_URL=redis_server.url)
        client = start_api(stack, env)
        endpoint = create_endpoint(client, receiver)
        redis_server.stop()
        sent = send(
            client, endpoint["id"], {"n": 7}
        )  # 202: stored, even though it cannot be enqueued
        redis_server.start()
        start_worker(stack, env)
        start_beat(stack, env)
        shown = settled(client, sent["id"])
        assert [a["status_code"] for a in shown["attempts"]] == [200]
        assert receiver.accepted_ids() == {sent["id"]}


def _parse(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
