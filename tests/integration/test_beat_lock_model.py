"""The beat lease in real Redis: beat_lock.lua follows the pure rule (beat_lock.py)
step by step, writes are fenced by the token, and the beat alarm is set once and
cleared once however many watchers check."""

import uuid

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from common.alarms.beat_alarm import BEAT_ALARM, BeatAlarm
from common.alarms.store import AlarmStore
from common.config import load_settings
from common.health.beat_lock import Lease, claim, may_write, release
from common.health.beat_store import BeatStore
from common.redis.keys import RedisKeys
from tests.support.servers import base_redis_url


class Clock:
    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


HOLDERS = ["beat-a", "beat-b", "beat-c"]


class LuaMatchesRule(RuleBasedStateMachine):
    """Random claims, releases and fenced writes by three beats, each remembering the
    token it was last granted, on the real script and on the pure rule."""

    @initialize()
    def start(self):
        import redis

        self.client = redis.Redis.from_url(base_redis_url(), decode_responses=True)
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        self.clock = Clock()
        self.store = BeatStore(self.client, self.namespace, clock=self.clock)
        self.lease = Lease()
        self.tokens = dict.fromkeys(HOLDERS, 0)

    @rule(seconds=st.integers(0, 12))
    def time_passes(self, seconds):
        self.clock.now += seconds

    @rule(holder=st.sampled_from(HOLDERS), ttl=st.integers(1, 10), stale=st.booleans())
    def claim(self, holder, ttl, stale):
        token = self.tokens[holder] - 1 if stale else self.tokens[holder]
        self.lease, granted = claim(self.lease, holder, token, self.clock.now, ttl)
        reply = self.store.claim(holder, token, ttl)
        assert reply.granted == granted
        assert (reply.holder, reply.token, reply.expires_at) == (
            self.lease.holder,
            self.lease.token,
            self.lease.expires_at,
        )
        if granted:
            self.tokens[holder] = reply.token

    @rule(holder=st.sampled_from(HOLDERS))
    def release(self, holder):
        self.lease, released = release(self.lease, holder, self.tokens[holder], self.clock.now)
        assert self.store.release(holder, self.tokens[holder]).granted == released

    @rule(holder=st.sampled_from(HOLDERS))
    def record(self, holder):
        allowed = may_write(self.lease, holder, self.tokens[holder], self.clock.now)
        assert self.store.record(holder, self.tokens[holder], ["x"], watchdogs=True) == allowed
        if allowed:
            assert self.store.read().runs["x"] == self.clock.now

    @invariant()
    def stored_lease_matches(self):
        if not hasattr(self, "store"):
            return
        record = self.store.read()
        if record is None:
            assert self.lease == Lease()
            return
        assert (record.token, record.expires_at) == (self.lease.token, self.lease.expires_at)
        assert record.active == (self.lease.holder if self.lease.held(self.clock.now) else "")

    def teardown(self):
        if hasattr(self, "client"):
            self.client.delete(RedisKeys(self.namespace).beat())
            self.client.close()


LuaMatchesRule.TestCase.settings = hsettings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLuaMatchesRule = LuaMatchesRule.TestCase


def test_tokens_grow_at_every_grant_and_a_lapsed_holder_cannot_write(redis_client, namespace):
    clock = Clock()
    store = BeatStore(redis_client, namespace, clock=clock)
    first = store.claim("a", 0, ttl=10)
    assert first.granted and first.token == 1 and first.expires_at == clock.now + 10
    assert not store.claim("b", 0, ttl=10).granted
    clock.now += 11  # a was paused past its lease
    second = store.claim("b", 0, ttl=10)
    assert second.granted and second.token == 2
    assert not store.record("a", 1, ["watchdog-postgres"], watchdogs=True)
    assert not store.claim("a", 1, ttl=10).granted  # a cannot renew a lease it lost
    assert store.record("b", 2, ["watchdog-postgres"], watchdogs=True)
    record = store.read()
    assert record.active == "b" and record.token == 2
    assert record.watchdogs_at == clock.now and record.runs == {"watchdog-postgres": clock.now}
    assert store.release("b", 2).granted
    assert store.read().active == ""
    assert store.claim("a", 1, ttl=10).token == 3  # taken at once after a release
    assert redis_client.ttl(RedisKeys(namespace).beat()) > 0


def test_the_key_is_the_one_redis_keys_names(redis_client, namespace):

    BeatStore(redis_client, namespace).claim("a", 0, ttl=5)
    assert redis_client.hget(RedisKeys(namespace).beat(), "holder") == "a"


@pytest.fixture
def watched(settings_env, redis_client, namespace):
    settings = load_settings(
        {
            **settings_env,
            "WATCHDOG_INTERVAL_SECONDS": "1",
            "ALARM_CLEAR_AFTER": "2",
            "BEAT_LOCK_TTL_SECONDS": "2",
            "BEAT_LOCK_RENEW_SECONDS": "0.5",
        },
        wait_seconds=0,
    )
    redis_time = Clock(1_000_000.0)
    beats = BeatStore(redis_client, namespace, clock=redis_time)
    return settings, beats, redis_time


def test_two_watchers_set_the_beat_alarm_once_and_clear_it_once(watched, redis_client):
    settings, beats, redis_time = watched
    told = []
    local = Clock(0.0)
    watchers = [BeatAlarm(redis_client, settings, told.append, clock=local) for _ in range(2)]
    for watcher in watchers:  # Redis's clock for the reads too
        watcher.beats = beats
    beats.claim("beat-a", 0, ttl=5)
    beats.record("beat-a", 1, ["watchdog-postgres"], watchdogs=True)

    for _ in range(6):  # fresh: ok, nothing to tell
        for watcher in watchers:
            assert watcher.check() is None
            assert watcher.last.kind == "ok"
        local.now += 0.5
        redis_time.now += 0.5
    # beat dies: 3 s (three intervals) after its last send the watchers find it stale
    for _ in range(8):
        local.now += 0.5
        redis_time.now += 0.5
        for watcher in watchers:
            watcher.check()
    assert [t.kind for t in told] == ["set"]
    assert told[0].alarm_id == BEAT_ALARM and told[0].severity == "critical"
    assert AlarmStore.for_settings(redis_client, settings).is_open(BEAT_ALARM)

    beats.claim("beat-b", 0, ttl=5)  # a standby takes over and sends the watchdogs
    beats.record("beat-b", 2, ["watchdog-postgres"], watchdogs=True)
    for _ in range(4):
        local.now += 0.5
        redis_time.now += 0.5
        for watcher in watchers:
            watcher.check()
    assert [t.kind for t in told] == ["set", "clear"]
    assert not AlarmStore.for_settings(redis_client, settings).is_open(BEAT_ALARM)


def test_a_watcher_that_just_started_or_regained_redis_waits_before_judging(watched, redis_client):
    settings, beats, redis_time = watched
    told = []
    local = Clock(0.0)
    watcher = BeatAlarm(redis_client, settings, told.append, clock=local)
    watcher.beats = beats
    assert watcher.check() is None and watcher.last.kind == "unknown"  # never a beat, yet
    local.now += 4.1  # the limit: an interval, the takeover and a renewal (1 + 2 + 1 s)
    watcher.check()
    assert [t.kind for t in told] == ["set"]  # a fleet without beat is alarmed too
