"""The token-bucket rule as a pure function: properties over random request sequences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.access.ratelimit import MICRO, Bucket, RateOptions, take
from common.config import load_settings

START = 1_700_000_000 * MICRO  # a realistic Unix time in microseconds


@st.composite
def options(draw) -> RateOptions:
    return RateOptions(per_second=draw(st.integers(1, 1000)), burst=draw(st.integers(1, 200)))


# Gaps between requests: often none (a burst), else up to a few seconds, in microseconds.
gaps = st.lists(
    st.one_of(st.just(0), st.integers(1, 1000), st.integers(1, 3 * MICRO)), max_size=250
)


def run(opts: RateOptions, gaps_us: list[int]) -> list[tuple[int, bool]]:
    """(time, allowed) of one request after each gap, from a fresh bucket."""
    bucket, now, seen = None, START, []
    for gap in gaps_us:
        now += gap
        decision = take(bucket, now, opts)
        bucket = decision.bucket
        seen.append((now, decision.allowed))
    return seen


@given(options(), gaps)
def test_never_more_than_burst_plus_rate_times_t_in_any_window(opts, gaps_us):
    """In any window [t1, t2], at most burst + per_second x (t2 - t1) requests get through."""
    allowed = [t for t, ok in run(opts, gaps_us) if ok]
    for i, first in enumerate(allowed):
        for j in range(i, len(allowed)):
            count = j - i + 1
            assert count * MICRO <= opts.capacity + opts.per_second * (allowed[j] - first)


@given(options(), gaps)
def test_a_refused_request_gets_through_exactly_at_its_retry_time(opts, gaps_us):
    """``retry_us`` is neither early nor late: one microsecond before it still refused."""
    bucket, now = None, START
    for gap in gaps_us:
        now += gap
        decision = take(bucket, now, opts)
        if not decision.allowed:
            assert decision.retry_us >= 1 and decision.retry_after >= 1
            assert take(decision.bucket, now + decision.retry_us, opts).allowed
            assert not take(decision.bucket, now + decision.retry_us - 1, opts).allowed
        else:
            assert decision.retry_us == 0
        bucket = decision.bucket


@given(options(), gaps)
def test_an_idle_key_gets_its_whole_burst_at_once_after_its_reset_time(opts, gaps_us):
    """After ``reset_us`` of silence the bucket is full: ``burst`` requests at one instant
    get through, the next does not."""
    bucket, now = None, START
    for gap in gaps_us:
        now += gap
        bucket = take(bucket, now, opts).bucket
    last = take(bucket, now, opts)
    now += last.reset_us
    bucket = last.bucket
    for n in range(opts.burst):
        decision = take(bucket, now, opts)
        assert decision.allowed, n
        assert decision.remaining == opts.burst - n - 1
        bucket = decision.bucket
    assert not take(bucket, now, opts).allowed


@given(options(), st.integers(0, 200), st.integers(1, 10 * MICRO))
def test_a_clock_that_goes_back_adds_nothing(opts, spent, back):
    """Requests stamped before the bucket's last one find it as it was, and do not make
    the time in between count twice."""
    bucket = Bucket(max(0, opts.capacity - spent * MICRO), START)
    earlier = take(bucket, START - back, opts)
    same_time = take(bucket, START, opts)
    assert earlier == same_time
    assert earlier.bucket.at == START


def test_a_new_key_starts_full_and_the_headers_say_so():
    opts = RateOptions(per_second=10, burst=20)
    first = take(None, START, opts)
    assert first.allowed and first.remaining == 19
    assert first.reset_us == MICRO // 10 and first.reset_after == 1
    assert first.bucket == Bucket(19 * MICRO, START)


def test_options_need_a_rate_and_a_burst():
    with pytest.raises(ValueError, match="per_second must be >= 1.*burst must be >= 1"):
        RateOptions(per_second=0, burst=0)


def test_options_from_settings_and_zero_is_off():
    env = {"DATABASE_URL": "postgresql://u:p@h/db", "REDIS_URL": "redis://h:6379/0"}
    defaults = load_settings(env, wait_seconds=0)
    assert RateOptions.from_settings(defaults) == RateOptions(per_second=50, burst=100)
    off = load_settings({**env, "API_RATE_LIMIT_PER_SECOND": "0"}, wait_seconds=0)
    assert RateOptions.from_settings(off) is None
