"""The Redis keys of an idle service expire, against real Redis: a breaker's or a
limit's keys and its place in the index go once it has been idle for the TTL (short
here), a busy one's stay, and state that matters outlives its period (an open
breaker its open time, a forced-open one forever, held leases their renewal)."""

from __future__ import annotations

import time

from common.guards.breaker import policy as bp
from common.guards.breaker.store import BreakerStore, key_ttl
from common.guards.limit import store as limit_store
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.guards.limit.store import list_limits
from common.redis.keys import RedisKeys

# Every period well below the TTL, so the TTL is idle_ttl itself.
TINY = bp.BreakerPolicy(
    failure_threshold=1,
    failure_rate=0,
    window_seconds=0.02,
    open_seconds=0.01,
    open_max_seconds=0.02,
    lease_seconds=0.02,
    jitter=0,
)
IDLE_TTL = 0.6
SUCCESS = (1, 0, 0, 0)


def breaker_keys(keys: RedisKeys, name: str) -> list[str]:
    return [keys.breaker(name), keys.breaker_window(name), keys.breaker_leases(name)]


def test_an_idle_breakers_keys_expire_and_a_busy_ones_stay(redis_client, namespace):
    store = BreakerStore(redis_client, namespace, idle_ttl=IDLE_TTL)
    keys = store.keys
    store.step("webhook:idle.example", TINY, "record", batch=SUCCESS)
    store.step("webhook:busy.example", TINY, "record", batch=SUCCESS)
    assert redis_client.exists(keys.breaker("webhook:idle.example"))
    assert 0 < redis_client.pttl(keys.breaker("webhook:idle.example")) <= IDLE_TTL * 1000
    for _ in range(2):  # idle for 0.7 s in all, busy every 0.35 s
        time.sleep(0.35)
        store.step("webhook:busy.example", TINY, "record", batch=SUCCESS)
    assert redis_client.exists(*breaker_keys(keys, "webhook:idle.example")) == 0
    assert redis_client.exists(keys.breaker("webhook:busy.example"))
    # The busy breaker's last step trimmed the idle one from the index.
    assert redis_client.zrange(keys.breaker_index(), 0, -1) == ["webhook:busy.example"]
    assert store.names() == ["webhook:busy.example"]


def test_an_open_breaker_outlives_its_open_time(redis_client, namespace):
    store = BreakerStore(redis_client, namespace, idle_ttl=0.01)
    policy = bp.BreakerPolicy(failure_threshold=1, failure_rate=0, open_seconds=0.2, jitter=0)
    assert key_ttl(policy, 0.01) == 10 * policy.open_max_seconds
    tripped = store.step("svc", policy, "record", batch=(1, 1, 0, 1))
    assert tripped.state.state == bp.OPEN
    assert redis_client.pttl(store.keys.breaker("svc")) > 9 * policy.open_max_seconds * 1000
    time.sleep(0.25)
    trial = store.step("svc", policy, "admit", arg="lease-1")
    assert trial.probe == "lease-1" and trial.state.trips == 1  # remembered, not forgotten
    assert redis_client.pttl(store.keys.breaker_leases("svc")) > 0


def test_a_forced_open_breaker_never_expires(redis_client, namespace):
    store = BreakerStore(redis_client, namespace, idle_ttl=IDLE_TTL)
    store.force("svc", "open", TINY)
    assert redis_client.pttl(store.keys.breaker("svc")) == -1  # no TTL
    assert redis_client.zscore(store.keys.breaker_index(), "svc") == float("inf")
    time.sleep(IDLE_TTL + 0.1)
    store.step("other", TINY, "record", batch=SUCCESS)  # trims the index
    assert store.names() == ["other", "svc"] and store.read("svc")["forced"] is True
    store.force("svc", "close", TINY)  # the operator's decision undone: an ordinary TTL
    assert 0 < redis_client.pttl(store.keys.breaker("svc")) <= IDLE_TTL * 1000


def test_names_left_in_the_old_set_are_listed_while_their_state_lasts(redis_client, namespace):
    store = BreakerStore(redis_client, namespace)
    keys = store.keys
    redis_client.hset(
        keys.breaker("webhook:forced.example"), mapping={"state": "open", "forced": 1}
    )
    redis_client.sadd(keys.legacy_breakers(), "webhook:forced.example", "webhook:gone.example")
    store.step("webhook:new.example", TINY, "record", batch=SUCCESS)
    assert store.names() == ["webhook:forced.example", "webhook:new.example"]
    assert redis_client.smembers(keys.legacy_breakers()) == {"webhook:forced.example"}


def idle_limit(redis_client, namespace, service: str) -> SharedLimit:
    limit = SharedLimit(
        redis_client,
        namespace,
        service,
        AIMDOptions(initial=2, min=1, max=4, window=0.02),
        background=False,
        lease_ttl=0.05,
    )
    limit.store.idle_ttl = IDLE_TTL
    return limit


def test_an_idle_limits_keys_expire_and_a_busy_ones_stay(redis_client, namespace):
    keys = RedisKeys(namespace)
    idle = idle_limit(redis_client, namespace, "webhook:idle.example")
    busy = idle_limit(redis_client, namespace, "webhook:busy.example")
    idle.try_acquire().release(True, 0.01)
    idle.sync()
    idle.close()
    held = busy.try_acquire()
    assert 0 < redis_client.pttl(keys.limit("webhook:idle.example")) <= IDLE_TTL * 1000
    until = time.monotonic() + IDLE_TTL + 0.1
    while time.monotonic() < until:
        time.sleep(0.05)
        busy.sync()
    idle_keys = [
        keys.limit("webhook:idle.example"),
        keys.limit_leases("webhook:idle.example"),
        keys.limit_peaks("webhook:idle.example"),
    ]
    assert redis_client.exists(*idle_keys) == 0
    assert redis_client.exists(keys.limit("webhook:busy.example"))
    assert redis_client.zrange(keys.limit_index(), 0, -1) == ["webhook:busy.example"]
    assert [view["service"] for view in list_limits(redis_client, namespace)] == [
        "webhook:busy.example"
    ]
    held.release(False, 0.01)


def test_a_limits_keys_outlive_its_leases_by_far(redis_client, namespace):
    limit = idle_limit(redis_client, namespace, "svc")
    limit.lease_ttl = 1.0
    limit.store.idle_ttl = 0.01
    lease = limit.try_acquire()
    assert limit_store.key_ttl(limit.options, 1.0, 0.01) == 10.0
    for key in (limit.store.keys.limit("svc"), limit.store.keys.limit_leases("svc")):
        assert redis_client.pttl(key) > 9_000
    lease.release(False, 0.01)
