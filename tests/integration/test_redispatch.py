"""How long the dispatcher waits before it enqueues again a message whose task never
started: ``DELIVERY_REDISPATCH_SECONDS`` while the deliveries queue holds tasks (a second
task per waiting message would double it), ``LOST_TASK_SECONDS`` once it is empty (the
task was lost, or died unclaimed with its worker); the depth read from each broker."""

from __future__ import annotations

import pytest
from kombu import Connection

from common.broker import queue_names
from common.config import load_settings
from tests.support.brokers import BROKERS
from worker.celeryconfig import celery_config
from worker.delivery.redispatch import LOST_TASK_SECONDS, deliveries_waiting, redispatch_seconds


def test_an_empty_queue_shortens_the_wait_and_anything_else_keeps_it():
    assert redispatch_seconds(300.0, 0) == LOST_TASK_SECONDS
    assert redispatch_seconds(10.0, 0) == 10.0  # never longer than configured
    assert redispatch_seconds(300.0, 3) == 300.0
    assert redispatch_seconds(300.0, None) == 300.0  # the broker did not answer


@pytest.mark.parametrize("broker", BROKERS, ids=lambda b: b.name)
def test_the_deliveries_queue_depth_on_each_broker(broker, settings_env):
    if broker.skip_reason():
        pytest.skip(broker.skip_reason())
    settings = load_settings(broker.env(settings_env), wait_seconds=0)
    options = celery_config(settings)["broker_transport_options"]

    def connect():
        return Connection(settings.effective_broker_url, transport_options=options)

    queue = queue_names(settings.jenga_namespace)["deliveries"]
    try:
        with connect() as conn:
            conn.SimpleQueue(queue).put({"n": 1})
        assert deliveries_waiting(settings, connect) == 1
        with connect() as conn:
            conn.SimpleQueue(queue).get(timeout=5).ack()
        assert deliveries_waiting(settings, connect) == 0
    finally:
        broker.delete_queues(settings.jenga_namespace)
    unreachable = load_settings(
        {**settings_env, "BROKER_URL": "redis://127.0.0.1:1/0", "CHECK_TIMEOUT_SECONDS": "1"},
        wait_seconds=0,
    )
    assert (
        deliveries_waiting(
            unreachable,
            lambda: Connection(
                unreachable.effective_broker_url,
                connect_timeout=1,
                transport_options={"max_retries": 0},
            ),
        )
        is None
    )
