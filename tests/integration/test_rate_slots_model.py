"""rate_slots.lua agrees with its Python twin: random sequences of reservations (time
moving on, standing still or going back; the endpoint's rate and the horizon changing
between calls) run through the real script on the real Redis and through
:func:`common.delivery.rate_slots.reserve`; every slot and every stored bucket must be
the same."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from common.access.ratelimit import MICRO
from common.delivery.rate_slot_store import IDLE_MARGIN_MS, RateSlotStore
from common.delivery.rate_slots import options_for, reserve, slot_ttl_ms
from tests.support import servers

START = 1_700_000_000 * MICRO

rates = st.integers(1, 2000)
horizons = st.one_of(st.just(0), st.integers(1, 120 * MICRO))
steps = st.lists(
    st.tuples(
        st.one_of(
            st.just(0),
            st.integers(1, 5000),
            st.integers(1, 5 * MICRO),
            st.integers(-2 * MICRO, -1),  # a clock going back
        ),
        st.one_of(st.none(), rates),  # None: the same rate as before
        st.one_of(st.none(), horizons),
    ),
    min_size=1,
    max_size=60,
)


@pytest.fixture(scope="module")
def client():
    client = redis.Redis.from_url(servers.base_redis_url(), decode_responses=True)
    yield client
    client.close()


@settings(max_examples=60, deadline=None)
@given(rate=rates, horizon=horizons, sequence=steps)
def test_the_script_agrees_with_the_python_rule(client, rate, horizon, sequence):
    store = RateSlotStore(client, f"s{uuid.uuid4().hex[:10]}", caller_clock=True)
    try:
        now, bucket = START, None
        for gap, new_rate, new_horizon in sequence:
            rate, horizon, now = new_rate or rate, new_horizon or horizon, now + gap
            expected = reserve(bucket, now, options_for(rate), horizon)
            assert store.reserve("ep_model", options_for(rate), horizon, now) == expected
            if expected.granted:
                assert store.read("ep_model") == expected.bucket
                bucket = expected.bucket
    finally:
        client.delete(store.keys.delivery_rate("ep_model"))


def test_the_key_expires_once_its_deepest_debt_would_have_filled(redis_client, namespace):
    store = RateSlotStore(redis_client, namespace)
    opts = options_for(10)
    store.reserve("ep_ttl", opts, 60 * MICRO)
    ttl = redis_client.pttl(store.keys.delivery_rate("ep_ttl"))
    expected = slot_ttl_ms(opts, 60 * MICRO, IDLE_MARGIN_MS)
    assert expected == 60_100 + 60_000
    assert expected - 1_000 < ttl <= expected


def test_redis_time_spaces_a_backlog_at_the_rate(redis_client, namespace):
    """On Redis's own clock: 20 reservations at once for an endpoint promised 10 a
    second get one slot at once (the burst) and the rest 0.1 s apart."""
    store = RateSlotStore(redis_client, namespace)
    waits = [store.reserve("ep_clock", options_for(10), 60 * MICRO).wait_us for _ in range(20)]
    assert waits[0] == 0
    gaps = [b - a for a, b in zip(waits[1:], waits[2:], strict=False)]
    # Redis's clock moves on a little between calls: each gap is 0.1 s less that.
    assert all(90_000 <= gap <= 100_000 for gap in gaps), gaps
    assert 1.7 * MICRO <= waits[-1] <= 1.9 * MICRO
