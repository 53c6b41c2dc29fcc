"""Alarms by audience: a customer's receiver breaker is a warning that does not
page anyone (unless an operator lists it in ``CRITICAL_SERVICES``); a breaker
of ours is critical; ``ALARM_NOTIFY_MIN_SEVERITY`` decides who hears of what."""

from __future__ import annotations

import pytest

from common.alarms.dispatch import notifiers_for
from common.alarms.store import Transition
from common.config import read_settings
from common.guards.breaker.alarm import breaker_severity

VALID = {
    "DATABASE_URL": "postgresql://jenga:pw@127.0.0.1:5432/jenga",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
}


@pytest.mark.parametrize(
    ("name", "patterns", "severity"),
    [
        ("webhook:hooks.acme.example", (), "warning"),
        ("webhook:hooks.acme.example", ("webhook:*.acme.example",), "critical"),
        ("webhook:hooks.other.example", ("webhook:*.acme.example",), "warning"),
        ("notify:slack", (), "critical"),
        ("payments-api", (), "critical"),
    ],
)
def test_breaker_severity(name, patterns, severity):
    assert breaker_severity(name, patterns) == severity


def transition(severity: str) -> Transition:
    return Transition("breaker:x", "set", "open", severity, 1.0, {}, 1.0)


def test_only_alarms_at_the_minimum_severity_reach_the_notifiers():
    settings = read_settings(VALID)
    assert notifiers_for(transition("critical"), settings) == ["slack"]
    assert notifiers_for(transition("warning"), settings) == []
    chatty = read_settings({**VALID, "ALARM_NOTIFY_MIN_SEVERITY": "warning"})
    assert notifiers_for(transition("warning"), chatty) == ["slack"]
    assert notifiers_for(transition("info"), chatty) == []
