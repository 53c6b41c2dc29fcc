"""Recover jobs as pure rules: the window a job may name, and the pace its deliveries
become due at, over random sequences of ticks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.delivery.recover_pace import due_slots
from common.delivery.recover_window import (
    RETENTION_MARGIN,
    WindowRefused,
    checked_window,
    recoverable_age,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def refusal(since, until, message_days=30.0, attempt_days=90.0) -> tuple[str, str]:
    with pytest.raises(WindowRefused) as refused:
        checked_window(since, until, NOW, message_days, attempt_days)
    return refused.value.field, str(refused.value)


def test_a_window_within_retention_is_kept_and_until_defaults_to_now():
    window = checked_window(NOW - 2 * HOUR, None, NOW, 30, 90)
    assert (window.since, window.until) == (NOW - 2 * HOUR, NOW)
    assert checked_window(NOW - 2 * HOUR, NOW - HOUR, NOW, 30, 90).until == NOW - HOUR
    # The whole retention, to the second, is allowed; a later until means now.
    assert checked_window(NOW - timedelta(days=30), None, NOW, 30, 90).since < NOW
    assert checked_window(NOW - timedelta(days=29), NOW + HOUR, NOW, 30, 90).until == NOW


def test_reversed_future_and_too_old_windows_are_refused_naming_the_field():
    assert refusal(NOW - HOUR, NOW - HOUR)[0] == "until"
    assert refusal(NOW - HOUR, NOW - 2 * HOUR)[0] == "until"
    assert refusal(NOW + HOUR, None)[0] == "since"
    field, message = refusal(NOW - timedelta(days=31), None)
    assert field == "since" and "MESSAGE_RETENTION_DAYS (30 days)" in message
    # The record going first bounds it instead.
    field, message = refusal(NOW - timedelta(days=8), None, 30, 7)
    assert field == "since" and "ATTEMPT_RETENTION_DAYS (7 days)" in message
    field, message = refusal(NOW - timedelta(days=29), NOW + timedelta(days=2))
    assert field == "until" and "longer than MESSAGE_RETENTION_DAYS" in message


def test_a_job_leaves_the_margin_before_expiry_to_the_purge():
    assert recoverable_age(30, 90) == timedelta(days=30) - RETENTION_MARGIN
    assert recoverable_age(30, 7) == timedelta(days=7) - RETENTION_MARGIN
    assert recoverable_age(0.001, 90) == timedelta(0)


rates = st.floats(0.05, 5000)
gaps = st.lists(st.floats(0, 5), min_size=1, max_size=60)
takes = st.lists(st.floats(0, 1), min_size=60, max_size=60)
aheads = st.floats(0.5, 3).map(lambda s: timedelta(seconds=s))


@given(rates, aheads, gaps, takes)
def test_ticks_never_make_more_due_than_the_rate_nor_any_in_the_past_or_too_far_ahead(
    rate, ahead, gap_seconds, take_shares
):
    """Whatever the ticks' timing and however much each takes of what it may: the due
    times handed out are 1/rate apart at least, none before its tick, none later than
    its tick plus ``ahead`` (but the one a slow rate always allows)."""
    frontier, now, handed = None, NOW, []
    for gap, share in zip(gap_seconds, take_shares, strict=False):
        now += timedelta(seconds=gap)
        slots = due_slots(frontier, now, rate, ahead)
        taken = round(slots.count * share)
        times = slots.times(taken)
        assert all(now <= t for t in times)
        assert all(t <= now + max(ahead, slots.spacing) for t in times)
        handed += times
        frontier = slots.frontier_after(taken) if taken else frontier
    spacing = timedelta(seconds=1 / rate)
    for earlier, later in zip(handed, handed[1:], strict=False):
        assert later - earlier >= spacing - timedelta(microseconds=1)


def test_the_schedule_is_filled_up_to_ahead_and_then_nothing_until_time_passes():
    slots = due_slots(None, NOW, 500, timedelta(seconds=2))
    assert slots.first == NOW and slots.count == 1000
    full = slots.frontier_after(1000)
    assert due_slots(full, NOW, 500, timedelta(seconds=2)).count == 0
    later = due_slots(full, NOW + timedelta(seconds=1), 500, timedelta(seconds=2))
    assert later.first == full and later.count == 500
    # A tick long late restarts at now: no burst of deliveries due in the past.
    late = due_slots(full, NOW + timedelta(seconds=60), 500, timedelta(seconds=2))
    assert late.first == NOW + timedelta(seconds=60) and late.count == 1000
    # However slow the rate, one at a time goes.
    assert due_slots(None, NOW, 0.1, timedelta(seconds=2)).count == 1
