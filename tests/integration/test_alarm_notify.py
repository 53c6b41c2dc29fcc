"""The schedule beat runs, and notify()'s direct path (no broker) to a Slack-like server."""

from common.alarms.store import Transition
from common.config import load_settings, set_settings
from tests.support.servers import wait_for
from worker.schedule import beat_schedule


def test_every_dependency_watchdog_is_scheduled_with_expiry_on_the_alarms_queue(settings_env):
    settings = load_settings({**settings_env, "WATCHDOG_INTERVAL_SECONDS": "2.5"}, wait_seconds=0)
    schedule = beat_schedule(settings)
    # Runs inside beat, needing no broker: never sent.
    assert schedule["watchdog-broker"]["options"] == {"jenga_in_beat": True}
    for name in ("postgres", "redis"):
        entry = schedule[f"watchdog-{name}"]
        assert entry["task"] == "jenga.watchdog.check" and entry["args"] == (name,)
        assert entry["schedule"] == 2.5
        assert entry["options"] == {"queue": f"{settings.jenga_namespace}.alarms", "expires": 2.5}


def test_direct_notify_retries_server_errors_and_reaches_both_notifiers(
    settings_env, slack, monkeypatch
):
    from common.alarms import dispatch

    monkeypatch.setattr(dispatch, "RETRY_BASE_SECONDS", 0.05)
    settings = load_settings(
        {**settings_env, "SLACK_WEBHOOK_URL": slack.url, "ALARM_WEBHOOK_URL": slack.url + "/json"},
        wait_seconds=0,
    )
    set_settings(settings)
    try:
        slack.script = [(503, {}, "unavailable"), (500, {}, "oops")]
        transition = Transition(
            "redis",
            "set",
            "Redis is unreachable",
            "critical",
            1_700_000_000.0,
            {"error": "ConnectionError"},
            1_700_000_000.0,
        )
        dispatch.notify(transition, direct=True)
        wait_for(lambda: len(slack.messages) == 2, 10, what="both notifiers")
        assert len(slack.requests) == 4
        kinds = sorted("text" if "text" in m else m["type"] for m in slack.messages)
        assert kinds == ["alarm.set", "text"]
    finally:
        set_settings(None)


def test_permanent_refusal_is_not_retried(settings_env, slack):
    from common.alarms import dispatch

    set_settings(load_settings({**settings_env, "SLACK_WEBHOOK_URL": slack.url}, wait_seconds=0))
    try:
        slack.script = [(400, {}, "invalid_payload")]
        transition = Transition("redis", "clear", "Redis is unreachable", "critical", 1.0, {}, 0.0)
        dispatch.send_in_background("slack", transition).join(10)
        assert len(slack.requests) == 1 and slack.messages == []
    finally:
        set_settings(None)


def test_direct_notify_gives_up_after_its_last_attempt_without_waiting_again(
    settings_env, slack, monkeypatch, caplog
):
    from common.alarms import dispatch

    monkeypatch.setattr(dispatch, "DIRECT_MAX_ATTEMPTS", 2)
    set_settings(load_settings({**settings_env, "SLACK_WEBHOOK_URL": slack.url}, wait_seconds=0))
    try:
        # The last answer asks for a minute's wait: a sender about to give up must not take it.
        slack.script = [(503, {"Retry-After": "0"}, "busy"), (503, {"Retry-After": "60"}, "busy")]
        transition = Transition("redis", "set", "Redis is unreachable", "critical", 1.0, {}, 1.0)
        thread = dispatch.send_in_background("slack", transition)
        thread.join(10)
        assert not thread.is_alive()
        assert len(slack.requests) == 2 and slack.messages == []
        assert any(getattr(r, "event", None) == "alarm.notify_gave_up" for r in caplog.records)
    finally:
        set_settings(None)
