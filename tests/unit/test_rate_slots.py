"""Promised rates as a pure rule: properties of slot reservations over random sequences."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.access.ratelimit import MICRO, RateOptions, take
from common.delivery.rate_slots import burst_for, options_for, reserve, slot_ttl_ms

START = 1_700_000_000 * MICRO

rates = st.integers(1, 2000)
horizons = st.one_of(st.just(0), st.integers(1, 120 * MICRO))
gaps = st.lists(
    st.one_of(st.just(0), st.integers(1, 1000), st.integers(1, 3 * MICRO)), max_size=200
)


def slots(rate: int, horizon: int, gaps_us: list[int]) -> list[tuple[int, bool, int]]:
    """(time, granted, wait) of one reservation after each gap, from a fresh bucket."""
    opts, bucket, now, seen = options_for(rate), None, START, []
    for gap in gaps_us:
        now += gap
        slot = reserve(bucket, now, opts, horizon)
        bucket = slot.bucket
        seen.append((now, slot.granted, slot.wait_us))
    return seen


@given(rates, horizons, gaps)
def test_never_more_than_burst_plus_rate_times_t_slots_in_any_window(rate, horizon, gaps_us):
    """Whoever reserves and whenever: the slot times granted in any window [t1, t2]
    number at most burst + rate x (t2 - t1)."""
    opts = options_for(rate)
    times = sorted(now + wait for now, granted, wait in slots(rate, horizon, gaps_us) if granted)
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            assert (j - i + 1) * MICRO <= opts.capacity + rate * (times[j] - first)


@given(rates, horizons, gaps)
def test_a_slot_is_never_past_the_horizon_and_a_refusal_takes_nothing(rate, horizon, gaps_us):
    opts, bucket, now = options_for(rate), None, START
    for gap in gaps_us:
        now += gap
        slot = reserve(bucket, now, opts, horizon)
        if slot.granted:
            assert 0 <= slot.wait_us <= horizon
        else:
            assert slot.wait_us >= 1
            # Nothing taken: the same reservation a moment later is refused the same way
            # or granted, never pushed further out.
            again = reserve(slot.bucket, now, opts, horizon)
            assert not again.granted and again.wait_us == slot.wait_us
            # Once the refusal's wait has passed, a reservation fits.
            assert reserve(slot.bucket, now + slot.wait_us, opts, horizon).granted
        bucket = slot.bucket


@given(rates, gaps)
def test_with_no_horizon_it_is_the_plain_token_bucket(rate, gaps_us):
    """Horizon 0: a slot is granted exactly when the request limit's bucket would let a
    request through (and then at once)."""
    opts, slot_bucket, take_bucket, now = options_for(rate), None, None, START
    for gap in gaps_us:
        now += gap
        slot, decision = reserve(slot_bucket, now, opts, 0), take(take_bucket, now, opts)
        assert slot.granted == decision.allowed
        assert slot.wait_us == (0 if slot.granted else decision.retry_us)
        slot_bucket, take_bucket = slot.bucket, decision.bucket


@given(rates, st.integers(1, 500))
def test_a_backlog_is_spaced_one_slot_after_another(rate, backlog):
    """Reserved at one instant, a backlog's slots follow each other 1/rate apart once the
    burst is spent: in order, nothing lost, the last within the horizon."""
    opts = options_for(rate)
    horizon = 3600 * MICRO
    waits, bucket = [], None
    for _ in range(backlog):
        slot = reserve(bucket, START, opts, horizon)
        assert slot.granted
        waits.append(slot.wait_us)
        bucket = slot.bucket
    assert waits == sorted(waits)
    assert waits[: opts.burst] == [0] * min(backlog, opts.burst)
    for n, wait in enumerate(waits[opts.burst :], start=1):
        assert wait == -(-n * MICRO // rate)


def test_burst_is_a_tenth_of_a_second_at_least_one():
    assert [burst_for(r) for r in (1, 9, 10, 11, 50, 10_000)] == [1, 1, 1, 2, 5, 1000]


def test_the_key_lives_until_its_deepest_debt_would_have_filled():
    opts = RateOptions(per_second=10, burst=1)
    # 60 s of debt plus one token of burst at 10 a second: 60.1 s, plus the margin.
    assert slot_ttl_ms(opts, 60 * MICRO, 1000) == 60_100 + 1000
