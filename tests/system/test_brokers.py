"""The broker can be Redis (default) or RabbitMQ: a real worker consumes from both."""

import uuid

import pytest
import redis
from celery import Celery
from kombu import Connection

from common.config import load_settings
from tests.support.brokers import BROKERS, consumers
from tests.support.servers import JengaProcess, jenga_env, wait_for
from worker.celeryconfig import celery_config
from worker.tasks.selftest import selftest_key


def test_worker_runs_a_task_from_broker(broker_env):
    settings = load_settings(broker_env, wait_seconds=0)
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "--without-mingle",
        "--without-gossip",
        "-Q",
        f"{settings.jenga_namespace}.default",
        env=jenga_env(**broker_env),
        name="worker",
    ).start()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    producer = Celery("test-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    token = uuid.uuid4().hex
    try:
        worker.wait_for_output("ready.", timeout=60)
        producer.send_task("jenga.selftest", args=[token])
        host = wait_for(
            lambda: client.get(selftest_key(settings.jenga_namespace, token)),
            30,
            what="selftest mark",
        )
        assert host
    finally:
        worker.stop()
        client.delete(selftest_key(settings.jenga_namespace, token))
        producer.close()


def test_a_frozen_redis_broker_costs_a_sender_a_bounded_wait(redis_server):
    """A Redis that accepts connections but never answers (SIGSTOP) makes a
    publish fail after the socket timeout instead of hanging its caller forever."""
    import signal
    import time

    from kombu.exceptions import OperationalError

    from worker.celeryconfig import REDIS_BROKER_SOCKET_TIMEOUT_SECONDS

    settings = load_settings(
        {
            "DATABASE_URL": "postgresql://u@127.0.0.1/db",
            "REDIS_URL": redis_server.url,
            "JENGA_NAMESPACE": f"frz{uuid.uuid4().hex[:8]}",
        },
        wait_seconds=0,
    )
    producer = Celery("test-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    producer.send_task("jenga.selftest", args=["warm"])  # connected and working
    redis_server.proc.send_signal(signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError):
            producer.send_task("jenga.selftest", args=["frozen"], retry=False)
        waited = time.monotonic() - started
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        producer.close()
    assert (
        REDIS_BROKER_SOCKET_TIMEOUT_SECONDS - 1 <= waited < REDIS_BROKER_SOCKET_TIMEOUT_SECONDS + 10
    )


def test_a_deleted_queue_is_declared_again_and_consumed(settings_env):
    """RabbitMQ cancels a consumer whose queue is deleted (consumer cancel
    notification): the worker reconnects, declares its queues again and goes
    on consuming, instead of sitting deaf on a queue that no longer exists."""
    rabbit = next(b for b in BROKERS if b.name == "rabbitmq")
    if rabbit.skip_reason():
        pytest.skip(rabbit.skip_reason())
    env = rabbit.env(settings_env)
    settings = load_settings(env, wait_seconds=0)
    queue = f"{settings.jenga_namespace}.default"
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "--without-mingle",
        "--without-gossip",
        "-Q",
        queue,
        env=jenga_env(**env),
        name="worker-cancel",
    ).start()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    producer = Celery("test-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    token, warm = uuid.uuid4().hex, uuid.uuid4().hex
    try:
        worker.wait_for_output("ready.", timeout=60)
        # A first task proves the worker's event loop runs. (A queue deleted in
        # the milliseconds between the worker's basic.consume and its loop's
        # first turn is a race in py-amqp/Celery start-up: the cancel lands in
        # a synchronous call that swallows it, and that worker stays deaf.)
        producer.send_task("jenga.selftest", args=[warm])
        wait_for(
            lambda: client.get(selftest_key(settings.jenga_namespace, warm)),
            30,
            what="a first task",
        )
        with Connection(rabbit.url) as conn:
            conn.default_channel.queue_delete(queue)
        wait_for(
            lambda: consumers(rabbit.url, queue) == 1,
            30,
            what="the queue declared and consumed again",
        )
        producer.send_task("jenga.selftest", args=[token])
        assert wait_for(
            lambda: client.get(selftest_key(settings.jenga_namespace, token)),
            30,
            what="selftest mark after the queue was deleted",
        )
        assert worker.alive()
    except BaseException:
        print(worker.output()[-5000:])
        raise
    finally:
        worker.stop()
        client.delete(
            selftest_key(settings.jenga_namespace, token),
            selftest_key(settings.jenga_namespace, warm),
        )
        rabbit.delete_queues(settings.jenga_namespace)
        producer.close()
