"""A lost Redis broker connection is torn down without an exception escaping,
in the state that stopped a worker in CI (Celery 5.7, kombu 5.6-5.7): two
channels polling with BRPOP in flight, unacknowledged messages on the task
channel, and the broker killed. Celery's teardown (``collect()`` then
``close()``) is run as the consumer runs it, after
:func:`~worker.steps.consumer.close_channels_one_by_one`."""

from __future__ import annotations

import socket

import pytest
from kombu import Connection, Consumer, Producer, Queue
from kombu.common import ignore_errors

from tests.support.servers import RedisServer
from worker.steps.consumer import close_channels_one_by_one

pytestmark = pytest.mark.slow


@pytest.fixture
def broker():
    server = RedisServer().start()
    yield server
    server.close()


def lost_connection_with_unacked_message(broker: RedisServer) -> tuple[Connection, object]:
    conn = Connection(broker.url)
    conn.ensure_connection(max_retries=1)
    tasks = conn.default_channel
    Producer(tasks).publish({"n": 1}, routing_key="tasks", declare=[Queue("tasks")])
    received = []
    consumer = Consumer(
        tasks, [Queue("tasks")], callbacks=[lambda body, message: received.append(message)]
    )
    consumer.qos(prefetch_count=10)
    consumer.consume()
    conn.drain_events(timeout=5)
    assert len(received) == 1 and tasks.qos._delivered  # taken, not acknowledged
    other = conn.channel()  # a second consumer, as the worker's control channel
    Consumer(other, [Queue("other")], callbacks=[]).consume()
    with pytest.raises(socket.timeout):
        conn.drain_events(timeout=0.3)  # both channels now wait in BRPOP
    assert tasks._in_poll and other._in_poll
    broker.stop()
    return conn, tasks


def celery_teardown(conn: Connection) -> None:
    """What ``Consumer.on_connection_error_after_connected`` does with the connection."""
    try:
        conn.collect(socket_timeout=5)
    except Exception:  # as Celery does
        pass
    ignore_errors(conn, conn.close)


def test_teardown_after_closing_channels_one_by_one_raises_nothing(broker):
    conn, tasks = lost_connection_with_unacked_message(broker)
    close_channels_one_by_one(conn)
    assert tasks.closed
    assert all(channel.closed for channel in conn.transport.channels)
    celery_teardown(conn)  # AttributeError here without the step above


def test_closing_channels_of_a_healthy_connection_keeps_unacked_messages(broker):
    """On a live broker the channels close as kombu closes them: the unacknowledged
    message goes back to its queue, to be taken again."""
    conn = Connection(broker.url)
    conn.ensure_connection(max_retries=1)
    Producer(conn.default_channel).publish({"n": 2}, routing_key="tasks", declare=[Queue("tasks")])
    received = []
    Consumer(
        conn.default_channel, [Queue("tasks")], callbacks=[lambda b, m: received.append(m)]
    ).consume()
    conn.drain_events(timeout=5)
    assert len(received) == 1
    close_channels_one_by_one(conn)
    conn.release()
    with Connection(broker.url) as again:
        message = again.SimpleQueue("tasks").get(timeout=5)
        assert message.payload == {"n": 2}
        message.ack()
