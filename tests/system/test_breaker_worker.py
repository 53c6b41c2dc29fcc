"""Breakers inside a real worker: alarms reach people whichever code built the
process's breaker registry; a worker whose breakers lost Redis says so in its
heartbeat, ``jenga worker health`` and ``inspect stats``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from api.app import create_app
from common.config import load_settings
from common.health.heartbeat import (
    beat_payload,
    breakers_summary,
    clear_breaker_fallback,
    heartbeat_path,
    mark_breaker_fallback,
    read_breaker_fallback,
    verdict,
)
from common.ops.cli import main
from tests.support.servers import ROOT, JengaProcess, jenga_env, wait_for
from worker.celeryconfig import celery_config, queue_names

pytestmark = pytest.mark.slow


def start_worker(
    env: dict[str, str], hostname: str, queues: list[str]
) -> tuple[JengaProcess, Celery]:
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "-n",
        hostname,
        "-Q",
        ",".join(queues),
        "-I",
        "tests.support.breaker_tasks",
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
        env=jenga_env(**env),
        name="breaker-worker",
    ).start()
    producer = Celery("test-producer", set_as_current=False)
    producer.conf.update(celery_config(load_settings(env, wait_seconds=0)))
    return worker, producer


def test_breaker_alarm_notifies_when_a_shared_circuit_breaker_builds_the_registry(
    broker_env, slack, tmp_path
):
    env = {
        **broker_env,
        "SLACK_WEBHOOK_URL": slack.url,
        "BREAKER_FAILURE_RATE": "0",
        "BREAKER_OPEN_SECONDS": "30",
        "HEARTBEAT_DIR": str(tmp_path),
    }
    queues = queue_names(load_settings(env, wait_seconds=0))
    worker, producer = start_worker(
        env, f"brk-{uuid.uuid4().hex[:6]}@test", [queues["default"], queues["alarms"]]
    )
    try:
        worker.wait_for_output("ready.", 60)
        for _ in range(2):  # failure_threshold=2 on the decorator
            producer.send_task("tests.breaker_call", args=[True], queue=queues["default"])
        wait_for(lambda: slack.texts(), 30, what="the breaker alarm to reach Slack")
        (text,) = slack.texts()
        assert "ALARM SET [critical] breaker:plain-svc" in text
        assert "breaker.opened" in worker.output()
    finally:
        worker.stop()


def worker_health(env: dict[str, str], hostname: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.ops.cli", "worker", "health", "--hostname", hostname],
        env=jenga_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_breaker_fallback_shows_in_heartbeat_health_and_stats(
    settings_env, broker, redis_server, redis_url, tmp_path
):
    # Breakers on a Redis of their own that the test kills; the broker stays up.
    env = {
        **settings_env,
        "REDIS_URL": redis_server.url,
        "BROKER_URL": broker.url or redis_url,
        "HEARTBEAT_DIR": str(tmp_path),
        "HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "CHECK_TIMEOUT_SECONDS": "0.5",
    }
    queues = queue_names(load_settings(env, wait_seconds=0))
    hostname = f"brk-{uuid.uuid4().hex[:6]}@test"
    worker, producer = start_worker(env, hostname, [queues["default"]])

    def beat() -> dict:
        path = heartbeat_path(tmp_path, hostname)
        return json.loads(path.read_text()) if path.exists() else {}

    try:
        worker.wait_for_output("ready.", 60)
        producer.send_task("tests.breaker_call", args=[False], queue=queues["default"])
        wait_for(
            lambda: "tests.breaker_call" in worker.output() and "succeeded" in worker.output(),
            30,
            what="a call through the breaker",
        )
        assert beat()["breakers"] == {"fallback": False, "processes": [], "error": None}
        assert "degraded" not in worker_health(env, hostname).stdout

        redis_server.stop()
        wait_for(
            lambda: beat().get("breakers", {}).get("fallback"),
            20,
            what="the heartbeat to report fallback",
        )
        assert beat()["breakers"]["processes"] == [worker.proc.pid]
        health = worker_health(env, hostname)
        assert (
            health.returncode == 0
        )  # degraded, still ready: deliveries go on under local breakers
        assert (
            "circuit breakers run per process in 1 process(es) (Redis unreachable" in health.stdout
        )
        stats = producer.control.inspect(destination=[hostname], timeout=5).stats()
        assert stats[hostname]["jenga_breakers"]["fallback"] is True
        assert stats[hostname]["jenga_heartbeat"]["breakers"]["fallback"] is True

        redis_server.start()
        wait_for(
            lambda: beat().get("breakers", {}).get("fallback") is False, 30, what="fallback to end"
        )
        assert "breaker.fallback_ended" in worker.output()
    finally:
        worker.stop()


def test_fallback_markers_of_dead_processes_are_dropped(tmp_path):
    mark_breaker_fallback(tmp_path, "w@h", 101, "ConnectionError: refused", now=5.0)
    mark_breaker_fallback(tmp_path, "w@h", 102, None, now=6.0)
    mark_breaker_fallback(tmp_path, "other@h", 103, None)
    markers = read_breaker_fallback(
        tmp_path, "w@h", alive=lambda pid: pid != 102
    )  # 102 died in fallback
    assert breakers_summary(markers) == {
        "fallback": True,
        "processes": [101],
        "error": "ConnectionError: refused",
    }
    assert [m["pid"] for m in read_breaker_fallback(tmp_path, "w@h", alive=lambda pid: True)] == [
        101
    ]
    payload = beat_payload("w@h", 1.0, True, {}, now=10.0, breakers=breakers_summary(markers))
    ready = verdict(payload, 10.5, 1.0)
    assert (
        ready.ok
        and "per process in 1 process(es) (Redis unreachable: ConnectionError: refused)"
        in ready.reason
    )
    clear_breaker_fallback(tmp_path, "w@h", 101)
    assert read_breaker_fallback(tmp_path, "w@h") == []
    assert verdict(beat_payload("w@h", 1.0, True, {}, now=10.0), 10.5, 1.0).reason.endswith("ago")
    assert len(read_breaker_fallback(tmp_path, "other@h", alive=lambda pid: True)) == 1


TOKEN = "s3cret-admin-token-0123456789"


def test_forcing_a_breaker_notifies_once_per_transition_from_api_and_cli(
    broker_env, slack, tmp_path, monkeypatch
):
    env = {
        **broker_env,
        "SLACK_WEBHOOK_URL": slack.url,
        "JENGA_ADMIN_TOKEN": TOKEN,
        "HEARTBEAT_DIR": str(tmp_path),
    }
    settings = load_settings(env, wait_seconds=0)
    worker, _ = start_worker(
        env, f"brk-{uuid.uuid4().hex[:6]}@test", [queue_names(settings)["alarms"]]
    )
    admin = {"Authorization": f"Bearer {TOKEN}"}

    def seen(n: int) -> list[str]:
        wait_for(lambda: len(slack.texts()) >= n, 30, what=f"{n} Slack messages")
        return slack.texts()

    try:
        worker.wait_for_output("ready.", 60)
        with TestClient(create_app(settings)) as client:
            assert client.post("/breakers/api-svc/open", headers=admin).json()["state"] == "open"
            assert "ALARM SET [critical] breaker:api-svc" in seen(1)[0]
            assert (
                client.post("/breakers/api-svc/open", headers=admin).status_code == 200
            )  # no transition: no message
            assert client.post("/breakers/api-svc/close", headers=admin).json()["state"] == "closed"
            assert "ALARM CLEARED breaker:api-svc" in seen(2)[1]

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert main(["breakers", "open", "cli-svc"]) == 0
        assert "ALARM SET [critical] breaker:cli-svc" in seen(3)[2]
        assert main(["breakers", "close", "cli-svc"]) == 0
        texts = seen(4)
        assert "ALARM CLEARED breaker:cli-svc" in texts[3]
        assert len(texts) == 4 and len(slack.requests) == 4  # one per transition, none repeated
    finally:
        worker.stop()


def test_notifications_wait_behind_an_open_slack_breaker_and_are_sent_once_it_closes(
    broker_env, slack, tmp_path
):
    """Slack is a service we don't control: while its breaker is open the
    notification is deferred (no request reaches Slack, no worker slot held),
    and it is delivered exactly once after the breaker closes."""
    import redis

    from common.alarms.dispatch import send_notify_tasks
    from common.alarms.store import Transition
    from common.guards.breaker.registry import policy_from_settings
    from common.guards.breaker.store import BreakerStore

    env = {**broker_env, "SLACK_WEBHOOK_URL": slack.url, "HEARTBEAT_DIR": str(tmp_path)}
    settings = load_settings(env, wait_seconds=0)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    store = BreakerStore(client, settings.jenga_namespace)
    store.force("notify:slack", "open", policy_from_settings(settings))
    queues = queue_names(settings)
    worker, producer = start_worker(env, f"ntf-{uuid.uuid4().hex[:6]}@test", [queues["alarms"]])
    try:
        worker.wait_for_output("ready.", 60)
        transition = Transition(
            "postgres",
            "set",
            "PostgreSQL is unreachable",
            "critical",
            1_700_000_000.0,
            {},
            1_700_000_000.0,
        )
        assert send_notify_tasks(settings, transition) == 1
        wait_for(
            lambda: "guard.deferred" in worker.output(), 30, what="the notification to be deferred"
        )
        assert slack.requests == []
        store.force("notify:slack", "close", policy_from_settings(settings))
        wait_for(lambda: slack.texts(), 60, what="the deferred notification to reach Slack")
        assert len(slack.texts()) == 1 and "PostgreSQL is unreachable" in slack.texts()[0]
    finally:
        worker.stop()
        producer.close()
        client.close()
