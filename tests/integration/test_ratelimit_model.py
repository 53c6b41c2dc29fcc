"""ratelimit.lua agrees with its Python twin: random sequences of requests (time moving
on, standing still or going back; the options changing between deploys) run through
the real script on the real Redis and through :func:`common.access.ratelimit.take`;
every verdict and every stored bucket must be the same."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from common.access.ratelimit import MICRO, RateOptions, take
from common.access.ratelimit_store import RateLimitStore, key_ttl
from common.redis.scripts import redis_time
from tests.support import servers

START = 1_700_000_000 * MICRO

options = st.builds(RateOptions, per_second=st.integers(1, 1000), burst=st.integers(1, 100))
steps = st.lists(
    st.tuples(
        st.one_of(
            st.just(0),
            st.integers(1, 5000),
            st.integers(1, 5 * MICRO),
            st.integers(-2 * MICRO, -1),  # a clock going back
        ),
        st.one_of(st.none(), options),  # None: the same options as before
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
@given(first=options, sequence=steps)
def test_the_script_agrees_with_the_python_rule(client, first, sequence):
    namespace = f"r{uuid.uuid4().hex[:10]}"
    store = RateLimitStore(client, namespace, caller_clock=True)
    try:
        opts, now, bucket = first, START, None
        for gap, changed in sequence:
            opts, now = changed or opts, now + gap
            expected = take(bucket, now, opts)
            assert store.take("jk_model123", opts, now) == expected
            assert store.read("jk_model123") == expected.bucket
            bucket = expected.bucket
    finally:
        client.delete(store.keys.rate_limit("jk_model123"))


def test_the_key_expires_once_the_bucket_would_be_full(redis_client, namespace):
    """TTL: the time an empty bucket takes to fill, plus the margin; each request renews it."""
    store = RateLimitStore(redis_client, namespace)
    opts = RateOptions(per_second=10, burst=50)
    store.take("jk_ttl12345", opts)
    ttl = redis_client.pttl(store.keys.rate_limit("jk_ttl12345"))
    assert key_ttl(opts) == 5_000 + 60_000
    assert key_ttl(opts) - 1_000 < ttl <= key_ttl(opts)


def test_without_a_caller_clock_the_bucket_runs_on_redis_time(redis_client, namespace):
    store = RateLimitStore(redis_client, namespace)
    before = round(redis_time(redis_client.time()) * MICRO)
    decision = store.take("jk_clock123", RateOptions(per_second=1, burst=2), now_us=1)  # ignored
    after = round(redis_time(redis_client.time()) * MICRO)
    assert decision.allowed and decision.remaining == 1
    assert before <= decision.bucket.at <= after
