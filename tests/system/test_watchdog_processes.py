"""Watchdogs end to end: a real worker and TWO real beats (one schedules; while Redis
is down both send the Redis watchdog), a dependency killed and brought back, a Slack-like
server counting what people are told. Exactly one set and one clear per
incident, and GET /alarms agrees at each step."""

from __future__ import annotations

import tempfile
import time

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.operator import OperatorListener
from common.config import load_settings
from tests.support.fake_slack import FakeSlack
from tests.support.servers import JengaProcess, jenga_env, wait_for

pytestmark = pytest.mark.slow

INTERVAL = 0.5
CLEAR_AFTER = 3


class Fleet:
    """One worker on the alarms queue and two beats, started together."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        folder = tempfile.mkdtemp(prefix="jenga-beat-")
        queue = f"{env['JENGA_NAMESPACE']}.alarms"
        # LOG_LEVEL=DEBUG keeps Celery's per-run lines of the watchdog task, which
        # checks_run() counts (at INFO they are filtered out as periodic noise).
        self.worker = JengaProcess.celery(
            "worker",
            "-P",
            "threads",
            "-c",
            "2",
            "-Q",
            queue,
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            env=jenga_env(**{**env, "LOG_LEVEL": "DEBUG"}),
            name="worker",
        )
        self.beats = [
            JengaProcess.celery(
                "beat",
                "--loglevel=INFO",
                "-s",
                f"{folder}/schedule-{i}",
                env=jenga_env(**env),
                name=f"beat{i}",
            )
            for i in (1, 2)
        ]

    def start(self) -> Fleet:
        self.worker.start()
        self.worker.wait_for_output("ready.", timeout=60)
        for beat in self.beats:
            beat.start()
        return self

    def checks_run(self) -> int:
        return self.worker.output().count("jenga.watchdog.check[")

    def wait_for_more_checks(self, count: int) -> None:
        """Polls the worker's log rather than sleeping: ``count`` more watchdog runs have
        happened."""
        target = self.checks_run() + count
        wait_for(lambda: self.checks_run() >= target, 30, what=f"{count} more watchdog runs")

    def stop(self) -> None:
        for process in (*self.beats, self.worker):
            process.stop()


def texts_about(slack: FakeSlack, alarm_id: str, kind: str) -> list[str]:
    marker = "ALARM SET" if kind == "set" else "ALARM CLEARED"
    return [t for t in slack.texts() if marker in t and f" {alarm_id} - " in t]


def alarms_now(settings) -> dict:
    with TestClient(OperatorListener(create_app(settings))) as client:
        response = client.get("/alarms")
    return {"status": response.status_code, **response.json()}


def test_postgres_outage_tells_slack_once_when_it_breaks_and_once_when_it_recovers(
    broker_env, postgres_server, slack, redis_client
):
    env = {
        **broker_env,
        "DATABASE_URL": postgres_server.url,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(INTERVAL),
        "ALARM_CLEAR_AFTER": str(CLEAR_AFTER),
        "CHECK_TIMEOUT_SECONDS": "0.5",
    }
    settings = load_settings(env, wait_seconds=0)
    fleet = Fleet(env).start()
    try:
        fleet.wait_for_more_checks(6)
        assert slack.requests == []
        assert alarms_now(settings)["active"] == []

        # Slack rate-limits the first message: the task must wait and retry, not drop it.
        slack.script = [(429, {"Retry-After": "1"}, "rate_limited")]
        postgres_server.stop()
        wait_for(lambda: texts_about(slack, "postgres", "set"), 30, what="the set notification")
        body = alarms_now(settings)
        assert [a["id"] for a in body["active"]] == ["postgres"]
        assert body["active"][0]["last_check"]["ok"] is False
        fleet.wait_for_more_checks(8)  # beat keeps checking a dead server
        assert len(texts_about(slack, "postgres", "set")) == 1
        assert len(slack.requests) == 2  # the 429 and the retry
        assert texts_about(slack, "postgres", "clear") == []

        postgres_server.start()
        wait_for(lambda: texts_about(slack, "postgres", "clear"), 30, what="the clear notification")
        body = alarms_now(settings)
        assert body["active"] == []
        assert [(e["alarm_id"], e["kind"]) for e in body["history"]] == [
            ("postgres", "clear"),
            ("postgres", "set"),
        ]
        fleet.wait_for_more_checks(8)
        assert len(texts_about(slack, "postgres", "set")) == 1
        assert len(texts_about(slack, "postgres", "clear")) == 1
        assert [e["kind"] for e in alarms_now(settings)["history"]] == ["clear", "set"]
    finally:
        fleet.stop()
    assert "Traceback" not in fleet.worker.output()
    assert "XXXXSECRET" not in fleet.worker.output()


def test_redis_outage_is_told_without_redis_and_stored_when_it_returns(
    settings_env, broker, redis_server, slack, redis_url, redis_client
):
    # Alarms live in the throwaway Redis; the broker is the shared one (own namespace).
    env = {
        **settings_env,
        "REDIS_URL": redis_server.url,
        "BROKER_URL": broker.url or redis_url,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(INTERVAL),
        "ALARM_CLEAR_AFTER": str(CLEAR_AFTER),
        "CHECK_TIMEOUT_SECONDS": "0.5",
    }
    settings = load_settings(env, wait_seconds=0)
    fleet = Fleet(env).start()
    try:
        fleet.wait_for_more_checks(6)
        assert slack.requests == []

        down_at = time.time()
        redis_server.stop()
        wait_for(lambda: texts_about(slack, "redis", "set"), 30, what="the set notification")
        assert alarms_now(settings)["status"] == 503
        fleet.wait_for_more_checks(8)
        assert len(texts_about(slack, "redis", "set")) == 1

        redis_server.start()  # empty: no persistence
        # The set made while Redis was down is written into the store, backdated...
        wait_for(lambda: alarms_now(settings).get("active"), 30, what="the reconciled alarm")
        body = alarms_now(settings)
        assert [a["id"] for a in body["active"]] == ["redis"]
        assert down_at - 1 < body["active"][0]["set_at"] < time.time()
        # ...and the clear comes once, after the passing checks.
        wait_for(lambda: texts_about(slack, "redis", "clear"), 30, what="the clear notification")
        fleet.wait_for_more_checks(8)
        assert len(texts_about(slack, "redis", "set")) == 1
        assert len(texts_about(slack, "redis", "clear")) == 1
        body = alarms_now(settings)
        assert body["active"] == []
        assert [(e["alarm_id"], e["kind"]) for e in body["history"]] == [
            ("redis", "clear"),
            ("redis", "set"),
        ]
    finally:
        fleet.stop()
    assert "Traceback" not in fleet.worker.output()


def test_broker_outage_is_told_by_beat_itself(settings_env, redis_server, slack, redis_client):
    # The broker is a throwaway Redis; alarms live in the shared one.
    env = {
        **settings_env,
        "BROKER_URL": redis_server.url,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(INTERVAL),
        "ALARM_CLEAR_AFTER": str(CLEAR_AFTER),
        "CHECK_TIMEOUT_SECONDS": "0.5",
    }
    settings = load_settings(env, wait_seconds=0)
    fleet = Fleet(env).start()
    try:
        for beat in fleet.beats:
            beat.wait_for_output("watchdog.beat_started", timeout=30)
        fleet.wait_for_more_checks(4)
        assert slack.requests == []

        redis_server.stop()
        wait_for(lambda: texts_about(slack, "broker", "set"), 30, what="the set notification")
        assert [a["id"] for a in alarms_now(settings)["active"]] == ["broker"]
        # Both beats keep checking the dead broker (their logs say so); nothing more may be said.
        failed_checks = lambda: sum(b.output().count("watchdog.check") for b in fleet.beats)  # noqa: E731
        seen = failed_checks()
        wait_for(lambda: failed_checks() >= seen + 4, 30, what="more failed broker checks")
        assert len(texts_about(slack, "broker", "set")) == 1

        redis_server.start()
        wait_for(lambda: texts_about(slack, "broker", "clear"), 60, what="the clear notification")
        assert alarms_now(settings)["active"] == []
        assert len(texts_about(slack, "broker", "set")) == 1
        assert len(texts_about(slack, "broker", "clear")) == 1
    finally:
        fleet.stop()
