"""Notifier messages (pure) and one send attempt against a local Slack-like server."""

import pytest

from common.alarms.notifiers import (
    NOTIFIERS,
    PermanentFailure,
    RetryableFailure,
    classify,
    notifier_urls,
    parse_retry_after,
    send,
    slack_payload,
    summary,
    webhook_payload,
)
from common.alarms.store import Transition

SET = Transition(
    "postgres",
    "set",
    "PostgreSQL is unreachable",
    "critical",
    1_700_000_000.0,
    {"error": "OperationalError: connection refused"},
    1_700_000_000.0,
)
CLEAR = Transition(
    "postgres",
    "clear",
    "PostgreSQL is unreachable",
    "critical",
    1_700_000_125.0,
    {},
    1_700_000_000.0,
)


def test_messages_say_what_happened():
    assert summary(SET) == (
        "ALARM SET [critical] postgres - PostgreSQL is unreachable: "
        "OperationalError: connection refused (at 2023-11-14 22:13:20 UTC)"
    )
    assert summary(CLEAR) == (
        "ALARM CLEARED postgres - PostgreSQL is unreachable after 2m05s"
        " (at 2023-11-14 22:15:25 UTC)"
    )
    assert slack_payload(SET) == {"text": ":rotating_light: " + summary(SET)}
    assert slack_payload(CLEAR)["text"].startswith(":white_check_mark: ALARM CLEARED")
    body = webhook_payload(CLEAR)
    assert body["type"] == "alarm.clear" and body["alarm"]["alarm_id"] == "postgres"
    assert Transition.from_dict(body["alarm"]) == CLEAR


def test_retry_after_parsing():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("999999") == 3600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=lambda: 1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


@pytest.mark.parametrize(
    ("notifier", "status", "headers", "body", "expected", "retry_after"),
    [
        ("slack", 200, {}, "ok", None, None),
        ("slack", 400, {}, "invalid_payload", PermanentFailure, None),
        ("slack", 404, {}, "no_service", PermanentFailure, None),
        ("slack", 429, {"retry-after": "7"}, "rate_limited", RetryableFailure, 7.0),
        ("slack", 503, {}, "", RetryableFailure, None),
        ("webhook", 204, {}, "", None, None),
        ("webhook", 422, {}, "bad", PermanentFailure, None),
        ("slack", 409, {}, "something_transient", RetryableFailure, None),
        ("slack", 409, {}, "channel_is_archived", PermanentFailure, None),
        ("webhook", 409, {}, "something_transient", PermanentFailure, None),
        ("webhook", 408, {}, "", RetryableFailure, None),
    ],
)
def test_classify(notifier, status, headers, body, expected, retry_after):
    failure = classify(notifier, status, headers, body)
    if expected is None:
        assert failure is None
    else:
        assert type(failure) is expected
        assert getattr(failure, "retry_after", None) == retry_after


def test_each_notifier_is_turned_on_by_its_own_setting():
    """Order and URLs come from the registry: Slack first, then the alarm webhook."""
    from common.config import load_settings

    settings_env = {
        "DATABASE_URL": "postgresql://u@db.invalid/jenga",
        "REDIS_URL": "redis://redis.invalid:6379/0",
        "CONFIG_WAIT_SECONDS": "0",
    }
    assert [notifier.name for notifier in NOTIFIERS] == ["slack", "webhook"]
    assert notifier_urls(load_settings(settings_env, wait_seconds=0)) == {}
    both = load_settings(
        {
            **settings_env,
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
            "ALARM_WEBHOOK_URL": "https://alarms.example/hook",
        },
        wait_seconds=0,
    )
    assert notifier_urls(both) == {
        "slack": "https://hooks.slack.com/services/T/B/X",
        "webhook": "https://alarms.example/hook",
    }


def test_send_to_slack_ok(slack):
    send("slack", slack.url, SET)
    assert slack.texts() == [slack_payload(SET)["text"]]


def test_send_reports_rate_limit_with_retry_after(slack):
    slack.script = [(429, {"Retry-After": "2"}, "rate_limited")]
    with pytest.raises(RetryableFailure) as caught:
        send("slack", slack.url, SET)
    assert caught.value.retry_after == 2.0
    assert slack.messages == []


def test_send_server_error_is_retryable_and_bad_payload_permanent(slack):
    slack.script = [(500, {}, "oops"), (400, {}, "invalid_payload")]
    with pytest.raises(RetryableFailure):
        send("slack", slack.url, SET)
    with pytest.raises(PermanentFailure):
        send("slack", slack.url, SET)


def test_unreachable_receiver_is_retryable_and_the_error_hides_the_url_path(slack):
    url = slack.url
    slack.stop()
    with pytest.raises(RetryableFailure) as caught:
        send("slack", url, SET, timeout=1)
    assert "XXXXSECRET" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_slow_receiver_times_out(slack):
    slack.delay = 2
    with pytest.raises(RetryableFailure):
        send("slack", slack.url, SET, timeout=0.3)
