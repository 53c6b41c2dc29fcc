"""Publisher confirms on the API's publish (RabbitMQ): a delivery task the broker did
not confirm is not taken as sent. Through a relay that goes silent (a broker that
stopped answering), the API still answers 202 (the message is stored), within
``CHECK_TIMEOUT_SECONDS``, and leaves the delivery to the dispatcher's next run
(``dispatched_at`` cleared) instead of waiting ``DELIVERY_REDISPATCH_SECONDS`` for a
task that was never queued. A real API process against the real RabbitMQ."""

from __future__ import annotations

import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support.brokers import BROKERS, RABBITMQ_URL
from tests.support.receiver import WebhookReceiver
from tests.support.stack import create_endpoint, fresh_database, send, stack_env, start_api
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.slow


def dispatched_at(database_url: str, delivery_id: str):
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT dispatched_at FROM webhook_deliveries WHERE id = %s", (delivery_id,)
        ).fetchone()[0]


def test_an_unconfirmed_publish_is_left_to_the_dispatcher(settings_env):
    rabbitmq = next(b for b in BROKERS if b.name == "rabbitmq")
    if reason := rabbitmq.skip_reason():
        pytest.skip(reason)
    upstream = urlsplit(RABBITMQ_URL)
    with (
        TcpRelay((upstream.hostname or "127.0.0.1", upstream.port or 5672)) as relay,
        WebhookReceiver() as receiver,
        ExitStack() as stack,
    ):
        database_url = stack.enter_context(fresh_database())
        env = stack_env(
            {**settings_env, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{relay.port}//"},
            database_url,
            CHECK_TIMEOUT_SECONDS="1",
        )
        client = start_api(stack, env)
        endpoint = create_endpoint(client, receiver)
        confirmed = send(client, endpoint["id"], {"n": 1})
        assert dispatched_at(database_url, confirmed["deliveries"][0]["id"]) is not None

        relay.freeze()
        started = time.monotonic()
        unconfirmed = send(client, endpoint["id"], {"n": 2})  # still 202: it is stored
        assert time.monotonic() - started < 8
        assert dispatched_at(database_url, unconfirmed["deliveries"][0]["id"]) is None
