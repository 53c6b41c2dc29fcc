"""The pure fan-out rules: who subscribes, and how a message reads from its deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from common.delivery.fan_out import subscribes, summary
from common.delivery.models import Delivery


def test_subscriptions():
    assert subscribes(None, None, "a.b", None)
    assert subscribes(["a.b"], None, "a.b", ["x"])
    assert not subscribes(["a.c"], None, "a.b", None)
    assert subscribes(None, ["eu"], "a.b", ["us", "eu"])
    assert not subscribes(None, ["eu"], "a.b", ["us"])
    assert not subscribes(None, ["eu"], "a.b", None)  # a channel filter needs a channel
    assert not subscribes([], None, "a.b", None)  # stored as None by the API; [] is nothing


def delivery(status, attempts=0, due=None, error=None, delivered=None) -> Delivery:
    return Delivery(
        status=status,
        attempt_count=attempts,
        next_attempt_at=due,
        last_error=error,
        delivered_at=delivered,
    )


def test_summary_reads_pending_then_failed_then_delivered():
    now = datetime.now(UTC)
    assert summary([]).status == "unrouted"
    done = summary(
        [
            delivery("delivered", 1, delivered=now),
            delivery("delivered", 2, delivered=now - timedelta(1)),
        ]
    )
    assert (done.status, done.attempt_count, done.delivered_at) == ("delivered", 3, now)
    mixed = summary(
        [
            delivery("failed", 8, error="HTTP 500"),
            delivery("pending", 1, due=now + timedelta(seconds=9), error="timeout"),
            delivery("pending", 0, due=now + timedelta(seconds=3)),
            delivery("delivered", 1, delivered=now),
        ]
    )
    assert mixed.status == "pending" and mixed.attempt_count == 10
    assert mixed.next_attempt_at == now + timedelta(seconds=3)
    assert mixed.last_error == "HTTP 500" and mixed.delivered_at is None
    assert summary([delivery("failed", 1, error="x"), delivery("delivered", 1)]).status == "failed"
