"""BROKER_QUEUE_TYPE=quorum on a real RabbitMQ, in a vhost of the test's own (native
delayed delivery declares vhost-wide exchanges and queues): every queue Jenga
declares is a quorum queue, whoever declared it first (the API's publisher, a
worker's ``-Q``, beat's routes); retries go through RabbitMQ's native delayed delivery
and arrive; a sub-second delay waits a whole second instead of coming straight back."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from urllib.parse import unquote, urlsplit

import pytest
import redis

from common.config import load_settings
from tests.support.brokers import queue_types, rabbitmq_vhost, vhost_skip_reason
from tests.support.receiver import Reply, WebhookReceiver
from tests.support.servers import jenga_env, wait_for
from tests.support.stack import (
    create_endpoint,
    fresh_database,
    send,
    settled,
    stack_env,
    start_api,
    start_beat,
    start_worker,
)
from worker.tasks.selftest import selftest_key

pytestmark = pytest.mark.slow


@pytest.fixture
def quorum_env(settings_env):
    if reason := vhost_skip_reason():
        pytest.skip(reason)
    with rabbitmq_vhost("jenga-quorum") as url:
        yield {**settings_env, "BROKER_URL": url, "BROKER_QUEUE_TYPE": "quorum"}


def vhost_of(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def test_messages_are_delivered_and_retried_through_quorum_queues(quorum_env):
    ns = quorum_env["JENGA_NAMESPACE"]
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        env = stack_env(quorum_env, database_url)
        # The API publishes before any worker ran: it declares the deliveries queue first.
        client = start_api(stack, env)
        endpoint = create_endpoint(client, receiver)
        # Two messages' first attempts fail (not more: the breaker would open): their
        # retries are delayed tasks.
        receiver.respond = lambda seen: Reply(
            500
            if seen.body["data"]["n"] < 2 and len(receiver.by_id()[seen.webhook_id]) == 1
            else 200
        )
        sent = [send(client, endpoint["id"], {"n": n}) for n in range(8)]
        start_worker(stack, env)
        start_beat(stack, env)  # the dispatcher: each retry is a delayed task

        for n, message in enumerate(sent):
            shown = settled(client, message["id"])
            assert [a["status_code"] for a in shown["attempts"]] == ([500, 200] if n < 2 else [200])
        types = queue_types(vhost_of(quorum_env["BROKER_URL"]))
        ours = {name: kind for name, kind in types.items() if name.startswith(f"{ns}.")}
        # default and deliveries (the worker's -Q), alarms (beat's watchdogs), operational.
        assert {f"{ns}.default", f"{ns}.deliveries", f"{ns}.alarms"} <= set(ours)
        assert set(ours.values()) == {"quorum"}, ours
        # Native delayed delivery's own levels: the retries' ETAs went through them.
        assert any(name.startswith("celery_delayed_") for name in types)


def test_a_sub_second_delay_waits_a_whole_second_not_none(quorum_env):
    from worker.app import JengaCelery
    from worker.celeryconfig import celery_config

    settings = load_settings(quorum_env, wait_seconds=0)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    tokens = [uuid.uuid4().hex for _ in range(3)]
    with ExitStack() as stack:
        start_worker(stack, jenga_env(**quorum_env), concurrency=2)
        producer = JengaCelery("test-producer", set_as_current=False)
        producer.conf.update(celery_config(settings))
        stack.callback(producer.close)
        stack.callback(client.delete, *(selftest_key(settings.jenga_namespace, t) for t in tokens))
        marks = {}
        for token in tokens:
            started = time.monotonic()
            # Celery alone truncates 0.4 s to 0: the task would be back at once.
            producer.send_task("jenga.selftest", args=[token], countdown=0.4)
            wait_for(
                lambda token=token: client.get(selftest_key(settings.jenga_namespace, token)),
                30,
                interval=0.02,
                what="selftest mark",
            )
            marks[token] = time.monotonic() - started
        assert all(waited >= 0.95 for waited in marks.values()), marks
