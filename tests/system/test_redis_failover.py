"""A Redis failover under a running stack: the API, a worker and beat on a Sentinel
group's ``REDIS_URL`` (and as the broker, or RabbitMQ as the broker), messages
posted the whole time. The API accepts every message (they are in PostgreSQL),
the worker delivers before and after, every message is delivered, and no alarm
is set or cleared more than once."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from contextlib import ExitStack

import httpx
import pytest

from common.alarms.store import AlarmStore
from common.redis.client import make_redis
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


class Poster:
    """Posts a message every ``interval`` s from a thread; keeps each answer's status."""

    def __init__(self, base_url: str, endpoint_id: str, interval: float = 0.05):
        self.client = httpx.Client(base_url=base_url, timeout=10)
        self.endpoint_id = endpoint_id
        self.interval = interval
        self.answers: list[tuple[float, int, str | None]] = []  # (time, status, message id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            body = {"endpoint_id": self.endpoint_id, "event_type": "t", "payload": {}}
            try:
                response = self.client.post("/v1/messages", json=body, headers=AUTH)
                status = response.status_code
                message_id = response.json().get("id") if status == 202 else None
            except httpx.HTTPError:
                status, message_id = 0, None
            self.answers.append((time.monotonic(), status, message_id))
            self._stop.wait(self.interval)

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)
        self.client.close()


@pytest.mark.parametrize("fail_over", ["failover", "kill_primary"])
def test_a_redis_failover_loses_and_refuses_nothing(
    settings_env, broker, sentinel_group, fail_over
):
    env_on_sentinel = broker.env({**settings_env, "REDIS_URL": sentinel_group.url()})
    with ExitStack() as stack, WebhookReceiver() as receiver:
        database_url = stack.enter_context(fresh_database())
        # SENTINEL FAILOVER: nothing may be lost to the old primary, which keeps taking
        # writes until it is demoted (no redispatch within the test's time). A killed primary
        # takes with it the tasks published to it and not yet replicated: enqueued again.
        redispatch = "300" if fail_over == "failover" else "5"
        env = stack_env(
            env_on_sentinel,
            database_url,
            DELIVERY_REDISPATCH_SECONDS=redispatch,
            WATCHDOG_INTERVAL_SECONDS="0.5",  # the redis watchdog sees the failover
        )
        ns = env["JENGA_NAMESPACE"]
        client = start_api(stack, env)
        start_worker(stack, env, "worker", 4, "-Q", f"{ns}.default,{ns}.deliveries,{ns}.alarms")
        start_beat(stack, env)
        endpoint = create_endpoint(client, receiver)
        settled(client, send(client, endpoint["id"], {"before": True})["id"])

        with Poster(str(client.base_url), endpoint["id"]) as poster:
            wait_for(lambda: len(poster.answers) > 10, 10, what="messages before")
            getattr(sentinel_group, fail_over)()
            after = time.monotonic()
            wait_for(
                lambda: sum(1 for t, _, _ in poster.answers if t > after) > 20,
                15,
                what="messages after the failover",
            )
        refused = [status for _, status, _ in poster.answers if status != 202]
        assert not refused, refused  # the API accepted every message through the failover
        # Delivered after the failover too, and nothing lost.
        sent = [message_id for _, _, message_id in poster.answers]
        last = settled(client, sent[-1])
        assert last["status"] == "delivered"
        wait_for(
            lambda: set(sent) <= set(receiver.by_id()), 40, interval=0.2, what="every delivery"
        )
        # No alarm flapped: each was set (and cleared) at most once.
        store = stack.enter_context(contextlib.closing(make_redis(sentinel_group.url(), 1.0)))
        history = Counter((e["alarm_id"], e["kind"]) for e in AlarmStore(store, ns).history())
        assert all(count == 1 for count in history.values()), history
