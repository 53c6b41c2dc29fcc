"""The periods of an endpoint's stats (pure): they tile the window, in order, each
within one UTC hour or day, and :func:`period_count` counts them without building them
(the API refuses a window of more than MAX_PERIODS from it)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from common.delivery.stats import PERIODS, period_count, period_floor, periods

OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS
)


@given(
    INSTANTS,
    st.timedeltas(timedelta(microseconds=1), timedelta(days=40)),
    st.sampled_from(list(PERIODS)),
)
def test_periods_tile_the_window_on_utc_boundaries(since, span, period):
    until = since + span
    found = periods(since, until, period)
    assert len(found) == period_count(since, until, period)
    assert found[0].start == since and found[-1].end == until
    for before, after in itertools.pairwise(found):
        assert before.end == after.start
    for part in found:
        assert part.start < part.end
        assert period_floor(part.start, period) == period_floor(
            part.end - timedelta(microseconds=1), period
        )
        assert part is found[0] or part.start == period_floor(part.start, period)


def test_a_period_is_a_utc_hour_or_day():
    at = datetime(
        2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=2))
    )  # 23:30 UTC the day before
    assert period_floor(at, "hour") == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert period_floor(at, "day") == datetime(2026, 3, 28, tzinfo=UTC)
    hour = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert period_count(hour, hour + timedelta(hours=1), "hour") == 1  # until is exclusive
    assert (
        period_count(hour + timedelta(minutes=30), hour + timedelta(hours=1, minutes=1), "hour")
        == 2
    )


def test_the_last_period_may_end_on_the_last_day_python_knows():
    until = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)
    assert periods(until - timedelta(hours=2), until, "day")[-1].end == until
