"""AlarmStore against the real Redis: the Lua script (common/alarms/policy.lua)
follows the pure policy (policy.py), transitions are atomic across concurrent
callers, history is bounded."""

import threading
import time
import uuid

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from common.alarms.policy import CLOSED, decide, decide_clear, decide_set
from common.alarms.store import AlarmStore, Transition
from common.redis.keys import RedisKeys
from tests.support.servers import base_redis_url


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_failed_check_sets_once_and_passing_checks_clear_once(redis_client, namespace):
    clock = FakeClock()
    store = AlarmStore(redis_client, namespace, clear_after=3, clock=clock)
    first = store.record_check(
        "postgres", False, "PostgreSQL is unreachable", details={"error": "refused"}
    )
    assert isinstance(first, Transition)
    assert (first.kind, first.alarm_id, first.severity, first.at) == (
        "set",
        "postgres",
        "critical",
        clock.now,
    )
    assert store.record_check("postgres", False, "PostgreSQL is unreachable") is None

    [alarm] = store.active()
    assert alarm["id"] == "postgres" and alarm["set_at"] == clock.now
    assert alarm["description"] == "PostgreSQL is unreachable"
    assert alarm["last_check"] == {}  # the last (second) check had no details

    clock.now += 10
    assert (
        store.record_check("postgres", True, "PostgreSQL is unreachable", details={"ok": True})
        is None
    )
    assert store.record_check("postgres", True, "x") is None
    assert store.active()[0]["passes"] == 2
    cleared = store.record_check("postgres", True, "x", details={"ok": True})
    assert cleared.kind == "clear" and cleared.set_at == 1_700_000_000.0 and cleared.at == clock.now
    assert cleared.description == "PostgreSQL is unreachable"  # from the set, not the check
    assert store.active() == []
    assert [e["kind"] for e in store.history()] == ["clear", "set"]
    assert store.record_check("postgres", True, "x") is None


def test_clear_without_set_is_no_transition_and_direct_set_is_idempotent(redis_client, namespace):
    store = AlarmStore(redis_client, namespace)
    assert store.clear("breaker:acme") is None
    assert store.set("breaker:acme", "breaker open", severity="warning").kind == "set"
    assert store.set("breaker:acme", "breaker open", severity="warning") is None
    assert store.clear("breaker:acme").kind == "clear"
    assert store.clear("breaker:acme") is None
    assert [e["kind"] for e in store.history()] == ["clear", "set"]


def test_set_can_be_backdated(redis_client, namespace):
    store = AlarmStore(redis_client, namespace, clock=FakeClock(2000.0))
    store.set("redis", "Redis is unreachable", at=1000.0)
    assert store.active()[0]["set_at"] == 1000.0


def test_transitions_are_stamped_on_redis_clock(redis_client, namespace, monkeypatch):
    """Without a test clock the store stamps transitions with Redis's time, not with the
    worker's (here an hour ahead)."""
    worker_clock = time.time
    monkeypatch.setattr(time, "time", lambda: worker_clock() + 3600)
    store = AlarmStore(redis_client, namespace, clear_after=1)
    seconds, micros = redis_client.time()
    opened = store.set("postgres", "PostgreSQL is unreachable")
    assert opened.at == pytest.approx(seconds + micros / 1e6, abs=5)
    assert store.active()[0]["set_at"] == opened.at
    cleared = store.record_check("postgres", True, "PostgreSQL is unreachable")
    assert cleared.set_at == opened.at and opened.at <= cleared.at < opened.at + 5
    assert [e["at"] for e in store.history()] == [cleared.at, opened.at]


def test_bad_input_is_refused(redis_client, namespace):
    store = AlarmStore(redis_client, namespace)
    with pytest.raises(ValueError):
        store.set("x", "d", severity="apocalyptic")
    with pytest.raises(ValueError):
        store.set("", "d")
    with pytest.raises(ValueError):
        AlarmStore(redis_client, namespace, clear_after=0)


def test_history_is_bounded(redis_client, namespace):
    store = AlarmStore(redis_client, namespace, history_max=10)
    for _ in range(200):
        store.set("flappy", "flaps")
        store.clear("flappy")
    # MAXLEN ~ trims by whole stream nodes (100 entries by default): bounded, not exact.
    assert redis_client.xlen(store.keys.alarms_history()) <= 10 + 100
    assert len(store.history(limit=5)) == 5


def test_concurrent_watchdogs_make_exactly_one_set_and_one_clear(redis_client, namespace):
    """Eight threads, each with its own connection, check the same failing and
    then recovering dependency at once: one set, one clear in total."""
    stores = [
        AlarmStore(
            redis_client.__class__.from_url(base_redis_url(), decode_responses=True), namespace
        )
        for _ in range(8)
    ]
    transitions: list[Transition] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(stores))

    def watchdog(store: AlarmStore):
        # The dependency is down for everyone, then up for everyone.
        for ok in (False, True):
            barrier.wait()
            for _ in range(5):
                result = store.record_check("postgres", ok, "PostgreSQL is unreachable")
                if result:
                    with lock:
                        transitions.append(result)

    threads = [threading.Thread(target=watchdog, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    kinds = sorted(t.kind for t in transitions)
    assert kinds == ["clear", "set"]
    assert [e["kind"] for e in stores[0].history()] == ["clear", "set"]


class StoreMatchesPolicy(RuleBasedStateMachine):
    """Random sequences of checks and direct set/clear on the real store and
    on the pure policy must agree transition by transition."""

    @initialize(clear_after=st.integers(1, 4))
    def start(self, clear_after):
        import redis

        self.client = redis.Redis.from_url(base_redis_url(), decode_responses=True)
        self.namespace = f"t{uuid.uuid4().hex[:10]}"
        self.store = AlarmStore(self.client, self.namespace, clear_after=clear_after)
        self.clear_after = clear_after
        self.model = {"a": CLOSED, "b": CLOSED}

    @rule(alarm=st.sampled_from(["a", "b"]), ok=st.booleans())
    def check(self, alarm, ok):
        self.model[alarm], expected = decide(self.model[alarm], ok, self.clear_after)
        got = self.store.record_check(alarm, ok, f"alarm {alarm}")
        assert (got.kind if got else None) == expected

    @rule(alarm=st.sampled_from(["a", "b"]))
    def direct_set(self, alarm):
        self.model[alarm], expected = decide_set(self.model[alarm])
        got = self.store.set(alarm, f"alarm {alarm}")
        assert (got.kind if got else None) == expected

    @rule(alarm=st.sampled_from(["a", "b"]))
    def direct_clear(self, alarm):
        self.model[alarm], expected = decide_clear(self.model[alarm])
        got = self.store.clear(alarm)
        assert (got.kind if got else None) == expected

    @invariant()
    def active_matches(self):
        if not hasattr(self, "store"):
            return
        active = {a["id"]: a["passes"] for a in self.store.active()}
        assert active == {k: v.passes for k, v in self.model.items() if v.open}

    def teardown(self):
        if hasattr(self, "client"):
            keys = list(self.client.scan_iter(RedisKeys(self.namespace).pattern()))
            if keys:
                self.client.delete(*keys)
            self.client.close()


StoreMatchesPolicy.TestCase.settings = hsettings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreMatchesPolicy = StoreMatchesPolicy.TestCase
