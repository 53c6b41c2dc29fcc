"""Operational webhooks end to end: a customer's receiver fails, exhausts a message,
recovers and then answers 410; the sender's operational endpoint (of the application)
and the fleet's (of ``app_operations``) each get, signed, ``endpoint.failing``,
``message.attempt.exhausted``, ``endpoint.recovered`` and ``endpoint.disabled`` once,
delivered by the worker's own machinery: the operational receiver's first answer is a
500, retried like any delivery, and no event is ever about it. Real API, worker and beat
processes, on each broker."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from common.delivery.models import OPERATIONS_APP_ID
from tests.support.receiver import WebhookReceiver
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

EVENTS = {
    "endpoint.failing",
    "message.attempt.exhausted",
    "endpoint.recovered",
    "endpoint.disabled",
}


def operational_endpoint(client, receiver: WebhookReceiver, app: str, path: str) -> dict:
    response = client.post(
        f"/v1/apps/{app}/endpoints",
        json={"url": receiver.url + path, "operational": True},
        headers=AUTH,
    )
    assert response.status_code == 201, response.text
    receiver.add_secret(response.json()["secret"])
    return response.json()


def test_the_sender_and_the_fleet_are_told_once_of_each_change(broker_env, redis_client):
    with ExitStack() as stack, WebhookReceiver() as customer, WebhookReceiver() as ops:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            broker_env,
            database_url,
            BREAKER_FAILURE_THRESHOLD="0",  # every attempt reaches the receiver
            BREAKER_FAILURE_RATE="0",
            ENDPOINT_FAILING_AFTER_SECONDS="0",  # told at the first failure
        )
        client = start_api(stack, env)
        start_worker(stack, env)
        start_beat(stack, env)
        endpoint = create_endpoint(client, customer)
        mine = operational_endpoint(client, ops, "app_default", "/app")
        fleet = operational_endpoint(client, ops, OPERATIONS_APP_ID, "/fleet")
        ops.respond = lambda seen: 500 if seen.count == 0 else 200

        answer = {"code": 500}
        customer.respond = lambda seen: answer["code"]
        failed = send(client, endpoint["id"], {"n": 1})
        assert settled(client, failed["id"], "failed")["status"] == "failed"
        answer["code"] = 200
        assert settled(client, send(client, endpoint["id"], {"n": 2})["id"])["status"] == (
            "delivered"
        )
        answer["code"] = 410
        settled(client, send(client, endpoint["id"], {"n": 3})["id"], "failed")

        def told(path: str) -> dict[str, dict] | None:
            bodies = {
                r.body["type"]: r.body
                for r in ops.requests
                if r.path == ops.url_path + path and 200 <= r.status < 300
            }
            return bodies if set(bodies) == EVENTS else None

        for path in ("/app", "/fleet"):
            wait_for(lambda path=path: told(path), 30, interval=0.2, what=f"events at {path}")
        app_events, fleet_events = told("/app"), told("/fleet")
        for events in (app_events, fleet_events):
            assert {e["data"]["endpoint_id"] for e in events.values()} == {endpoint["id"]}
            assert events["message.attempt.exhausted"]["data"]["message_id"] == failed["id"]
            assert events["message.attempt.exhausted"]["data"]["last_status_code"] == 500
            assert events["endpoint.disabled"]["data"]["trigger"] == "automatic"
            assert "410" in events["endpoint.disabled"]["data"]["reason"]
            assert events["endpoint.failing"]["data"]["app_uid"] == "default"
        # Signed with each operational endpoint's own secret; once each (a retry repeats
        # the webhook-id of the one that failed: the 500 was retried).
        seen = ops.by_id()
        assert all(r.verified for requests in seen.values() for r in requests)
        accepted = [ids for ids, requests in seen.items() if any(r.status == 200 for r in requests)]
        assert len(accepted) == 2 * len(EVENTS)
        assert any(len(requests) == 2 for requests in seen.values())  # the first one, retried
        # Nothing about the operational endpoints, though one of them failed.
        about = {r.body["data"]["endpoint_id"] for r in ops.requests}
        assert about == {endpoint["id"]}
        shown = client.get(f"/v1/apps/{OPERATIONS_APP_ID}/messages", headers=AUTH).json()
        assert {m["event_type"] for m in shown["data"]} == EVENTS
        assert {m["status"] for m in shown["data"]} == {"delivered"}
        assert mine["id"] != fleet["id"]
