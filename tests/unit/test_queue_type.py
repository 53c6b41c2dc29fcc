"""BROKER_QUEUE_TYPE: every declarer of a queue (the worker's app, beat, the API's and
the command line's publisher) declares it the same way, and delays on quorum queues
are rounded up to whole seconds. Pure: no broker is contacted."""

from datetime import UTC, datetime, timedelta

import pytest

from common.broker import publisher, queue_declarations, whole_second_delay
from common.config import ConfigError, read_settings

VALID = {
    "DATABASE_URL": "postgresql://jenga@db.internal:5432/jenga",
    "REDIS_URL": "redis://cache:6379/0",
}
RABBITMQ = {**VALID, "BROKER_URL": "amqp://guest:guest@rabbit:5672//"}


def test_classic_is_the_default_and_leaves_celerys_declarations_alone():
    settings = read_settings(RABBITMQ)
    assert settings.broker_queue_type == "classic"
    assert queue_declarations(settings) == {}


def test_quorum_on_a_redis_broker_is_refused_before_anything_connects():
    with pytest.raises(ConfigError) as caught:
        read_settings({**VALID, "BROKER_QUEUE_TYPE": "quorum"})
    assert any("BROKER_QUEUE_TYPE=quorum needs a RabbitMQ" in p for p in caught.value.problems)
    with pytest.raises(ConfigError) as caught:
        read_settings({**RABBITMQ, "BROKER_QUEUE_TYPE": "stream"})
    assert any(p.startswith("BROKER_QUEUE_TYPE:") for p in caught.value.problems)


def test_the_worker_and_the_publisher_declare_every_queue_as_quorum():
    from worker.celeryconfig import celery_config

    settings = read_settings({**RABBITMQ, "BROKER_QUEUE_TYPE": "quorum", "JENGA_NAMESPACE": "q1"})
    worker_app = publisher(settings, "worker-view")
    worker_app.conf.update(celery_config(settings))
    for app in (publisher(settings), worker_app):
        queues = app.amqp.queues
        for role in ("default", "deliveries", "operational", "alarms"):
            queue = queues[f"q1.{role}"]  # the default one, or made as a route names it
            assert queue.queue_arguments == {"x-queue-type": "quorum"}
            # Native delayed delivery routes through topic exchanges only.
            assert queue.exchange.type == "topic"
            assert queue.exchange.name == f"q1.{role}" and queue.routing_key == f"q1.{role}"


@pytest.mark.parametrize(
    ("countdown", "expected"),
    [(None, None), (0, None), (-3, None), (0.001, 1), (0.5, 1), (1.0, 1), (1.2, 2), (299.9, 300)],
)
def test_a_countdown_is_rounded_up_to_whole_seconds(countdown, expected):
    assert whole_second_delay(countdown, None, datetime.now(UTC)) == expected


def test_an_eta_becomes_the_whole_seconds_until_it():
    now = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    assert whole_second_delay(None, now + timedelta(milliseconds=250), now) == 1
    assert whole_second_delay(None, now + timedelta(seconds=7, milliseconds=1), now) == 8
    assert whole_second_delay(None, now - timedelta(seconds=1), now) is None
    # A naive ETA is read in UTC, as Celery reads it with enable_utc.
    assert whole_second_delay(None, datetime(2026, 12, 5, 12, 0, 2), now) == 2


def test_the_workers_app_rounds_delays_up_on_quorum_queues_only(monkeypatch):
    from celery import Celery

    from worker.app import JengaCelery

    sent = []

    def record(self, name, args=None, kwargs=None, countdown=None, eta=None, **options):
        sent.append((countdown, eta))

    # What JengaCelery hands on to Celery's own send_task is recorded, not published.
    monkeypatch.setattr(Celery, "send_task", record)
    app = JengaCelery("recording", set_as_current=False)
    app.conf.task_default_queue_type = "classic"
    app.send_task("t", countdown=0.5)
    app.conf.task_default_queue_type = "quorum"
    app.send_task("t", countdown=0.5)
    app.send_task("t", eta=app.now() + timedelta(seconds=2.2))
    app.send_task("t")
    assert sent == [(0.5, None), (1, None), (3, None), (None, None)]
