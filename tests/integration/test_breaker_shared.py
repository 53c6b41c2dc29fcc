"""The fleet-wide breaker against real Redis: the Lua step agrees with the pure
policy, one incident trips it once across processes, exactly K trial calls go
out fleet-wide (refusals once the slots are taken are held locally, not asked
again per call), dead probes' leases expire, every process learns a trip
through pub/sub, Redis loss falls back to per-process breakers, and the
``circuitbreaker`` drop-in works."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid

import pytest
import redis
from circuitbreaker import CircuitBreakerError, CircuitBreakerMonitor, circuit
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from common.guards.breaker import policy as bp
from common.guards.breaker.compat import SharedCircuitBreaker, SharedCircuitBreakerError
from common.guards.breaker.registry import BreakerRegistry
from common.guards.breaker.store import BreakerStore
from tests.support.servers import wait_for

POLICY = bp.BreakerPolicy(
    failure_threshold=4,
    timeout_weight=3,
    failure_rate=0.6,
    min_calls=6,
    window_seconds=10,
    slow_call_rate=0.7,
    open_seconds=1.0,
    open_max_seconds=5.0,
    half_open_calls=2,
    lease_seconds=2.0,
    jitter=0.3,
    buckets=5,
)


def comparable(state: bp.BreakerState) -> tuple:
    return (
        state.state,
        state.open_until,
        state.trips,
        state.total_trips,
        state.consecutive,
        state.forced,
        state.probe_successes,
    )


def test_lua_step_agrees_with_pure_policy(redis_client, namespace):
    class LuaVsPure(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.store = BreakerStore(redis_client, namespace, caller_clock=True)
            self.name = uuid.uuid4().hex[:8]
            self.now = 1_700_000_000.25
            self.pure = bp.BreakerState()
            self.lua = bp.BreakerState()
            self.leases: list[str] = []

        def step(self, op, u=0.0, arg="", batch=(0, 0, 0, 0)):
            reply = self.store.step(self.name, POLICY, op, self.now, u, arg, batch)
            self.lua = reply.state
            return reply

        @rule(dt=st.sampled_from([0.05, 0.4, 1.1, 2.5, 6.0]))
        def time_passes(self, dt):
            self.now += dt

        @rule(
            outcomes=st.lists(
                st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=6
            ),
            u=st.floats(0, 0.999),
        )
        def record(self, outcomes, u):
            batch = bp.Outcomes()
            for failed, slow, timed_out in outcomes:
                batch = batch.plus(failed, slow, POLICY.timeout_weight if timed_out else 1)
            self.pure, change = bp.record(POLICY, self.pure, batch, self.now, u)
            reply = self.step(
                "record", u, "", (batch.calls, batch.failures, batch.slow, batch.trailing_failures)
            )
            assert (reply.change is not None) == (change is not None)

        @rule()
        def admit(self):
            lease = uuid.uuid4().hex
            self.pure, admission = bp.admit(POLICY, self.pure, self.now, lease)
            reply = self.step("admit", 0.0, lease)
            assert reply.allowed == admission.allowed
            assert reply.retry_in == pytest.approx(admission.retry_in)
            if admission.probe:
                self.leases.append(lease)

        @rule(data=st.data(), failed=st.booleans(), u=st.floats(0, 0.999))
        def probe(self, data, failed, u):
            if not self.leases:
                return
            lease = data.draw(st.sampled_from(self.leases))
            self.leases.remove(lease)
            self.pure, change = bp.record_probe(POLICY, self.pure, lease, failed, self.now, u)
            reply = self.step("probe", u, lease, (1, int(failed), 0, int(failed)))
            assert (reply.change is not None) == (change is not None)

        @rule(action=st.sampled_from(["open", "close", "reset"]))
        def force(self, action):
            self.pure, change = bp.force(POLICY, self.pure, action, self.now)
            reply = self.step("force", 0.0, action)
            assert (reply.change is not None) == (change is not None)

        @invariant()
        def agree(self):
            assert comparable(bp.settle(POLICY, self.lua, self.now)) == comparable(
                bp.settle(POLICY, self.pure, self.now)
            )

    run_state_machine_as_test(
        LuaVsPure, settings=hsettings(max_examples=200, stateful_step_count=40, deadline=None)
    )


def test_workers_an_hour_off_agree_on_redis_clock(redis_client, namespace):
    """Workers whose clocks are an hour behind and ahead of Redis's: the open time starts
    and ends when Redis's clock says, for both (on their own clocks the trip would already
    be over for one and last an hour for the other)."""
    policy = bp.BreakerPolicy(
        failure_threshold=1, failure_rate=0, open_seconds=0.3, jitter=0, half_open_calls=2
    )
    behind = BreakerRegistry(redis_client, namespace, policy, clock=lambda: time.time() - 3600)
    ahead = BreakerRegistry(redis_client, namespace, policy, clock=lambda: time.time() + 3600)
    late = behind.breaker("svc")
    late.record(True)
    behind.flush()
    assert not late.admit().allowed
    early = ahead.breaker("svc")
    refused = early.admit()
    assert not refused.allowed and 0 < refused.retry_in <= 0.3
    assert BreakerStore(redis_client, namespace).read("svc")["state"] == "open"
    time.sleep(0.35)
    assert late.admit().probe and early.admit().probe
    assert BreakerStore(redis_client, namespace).read("svc")["probes_in_flight"] == 2


# --- several processes ---------------------------------------------------------


def _hammer(redis_url, namespace, name, failures, counter_key, barrier):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    registry = BreakerRegistry(
        client,
        namespace,
        bp.BreakerPolicy(failure_threshold=5, failure_rate=0),
        on_transition=lambda n, c: client.incr(counter_key),
    )
    breaker = registry.breaker(name)
    barrier.wait()
    for _ in range(failures):
        breaker.record(True)
        registry.flush()


def _probe(redis_url, namespace, name, attempts, counter_key, barrier):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    registry = BreakerRegistry(
        client, namespace, bp.BreakerPolicy(half_open_calls=2, open_seconds=0.2)
    )
    breaker = registry.breaker(name)
    registry.refresh()
    barrier.wait()
    for _ in range(attempts):
        if breaker.admit().probe:
            client.incr(counter_key)


def _run_all(target, args, n=4):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=target, args=(*args, barrier)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)


def test_one_incident_trips_once_across_processes(redis_client, redis_url, namespace):
    counter = f"{namespace}:test:transitions"
    _run_all(_hammer, (redis_url, namespace, "svc", 10, counter))
    view = BreakerStore(redis_client, namespace).read("svc")
    assert view["state"] == "open"
    assert view["total_trips"] == 1
    assert (
        redis_client.get(counter) == "1"
    )  # exactly one process saw the transition (and would alarm)


def test_exactly_k_trial_calls_fleet_wide(redis_client, redis_url, namespace):
    store = BreakerStore(redis_client, namespace)
    policy = bp.BreakerPolicy(half_open_calls=2, open_seconds=0.2)
    for _ in range(5):
        store.step("svc", policy, "record", time.time(), 0.0, "", (1, 1, 0, 1))
    assert store.read("svc")["state"] == "open"
    wait_for(lambda: store.read("svc")["state"] == "half_open", 5, what="open time to pass")
    counter = f"{namespace}:test:probes"
    _run_all(_probe, (redis_url, namespace, "svc", 20, counter))
    assert redis_client.get(counter) == "2"
    assert store.read("svc")["probes_in_flight"] == 2


def test_expired_probe_lease_frees_the_slot(redis_client, namespace):
    now = [1000.0]
    registry = BreakerRegistry(
        redis_client,
        namespace,
        bp.BreakerPolicy(
            failure_threshold=1, open_seconds=1, jitter=0, half_open_calls=1, lease_seconds=5
        ),
        clock=lambda: now[0],
    )
    registry.store.caller_clock = True  # steps on the test's clock, not Redis's
    breaker = registry.breaker("svc")
    breaker.record(True)
    registry.flush()
    assert not breaker.admit().allowed
    now[0] += 1.5
    dead = breaker.admit()  # this probe's worker "dies": it never reports
    assert dead.probe
    assert not breaker.admit().allowed  # the one slot is taken
    now[0] += 5.1
    second = breaker.admit()
    assert second.probe and second.probe != dead.probe
    breaker.record(False, admission=dead)  # too late: ignored
    assert breaker.state == "half_open"
    breaker.record(False, admission=second)
    assert breaker.state == "closed"


def test_refusals_with_every_trial_slot_taken_are_held_locally(redis_client, namespace):
    now = [1000.0]
    registry = BreakerRegistry(
        redis_client,
        namespace,
        bp.BreakerPolicy(
            failure_threshold=1, open_seconds=1, jitter=0, half_open_calls=1, lease_seconds=5
        ),
        clock=lambda: now[0],
        refusal_hold=0.01,
    )
    registry.store.caller_clock = True  # steps on the test's clock, not Redis's
    breaker = registry.breaker("svc")
    breaker.record(True)
    registry.flush()
    now[0] += 1.5
    probe = breaker.admit()
    assert probe.probe
    steps = []
    real_step = registry.store.step
    registry.store.step = lambda *args, **kwargs: (
        steps.append(args[2]) or real_step(*args, **kwargs)
    )
    refusals = [breaker.admit() for _ in range(200)]
    assert not any(r.allowed for r in refusals)
    assert steps == ["admit"]  # one round trip for 200 refused calls
    assert all(
        r.retry_in == pytest.approx(1.0) for r in refusals
    )  # as Redis said: open_seconds at most
    now[0] += 0.011  # the hold is over: ask the fleet again
    assert not breaker.admit().allowed and steps == ["admit", "admit"]
    breaker.record(False, admission=probe)  # the trial call succeeds: closed, the hold forgotten
    assert breaker.admit() is bp.ADMITTED and breaker.state == "closed"


def test_every_process_learns_a_trip_through_pubsub(redis_client, namespace, settings):
    policy = bp.BreakerPolicy(failure_threshold=2, failure_rate=0, open_seconds=30)
    clients = [redis.Redis.from_url(settings.redis_url, decode_responses=True) for _ in range(2)]
    tripping = BreakerRegistry(clients[0], namespace, policy, refresh_seconds=60).start()
    watching = BreakerRegistry(clients[1], namespace, policy, refresh_seconds=60).start()
    try:
        watcher = watching.breaker("svc")
        assert watcher.admit().allowed
        tripper = tripping.breaker("svc")
        tripper.record(True)
        tripper.record(True)  # the flush thread is woken by failures
        wait_for(
            lambda: not watcher.admit().allowed,
            2,
            interval=0.005,
            what="the trip to reach the other registry",
        )
        # Open for 30 s shortened by up to the policy's jitter share (20%), minus the time spent
        # here.
        assert 30 * (1 - policy.jitter) - 2 < watcher.admit().retry_in <= 30
    finally:
        tripping.close()
        watching.close()


def test_redis_loss_falls_back_to_per_process_breaker(redis_server, namespace, caplog):
    client = redis.Redis.from_url(
        redis_server.url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    registry = BreakerRegistry(
        client, namespace, bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=60)
    )
    breaker = registry.breaker("svc")
    breaker.record(True)
    registry.flush()  # one failure known to the fleet
    redis_server.stop()
    caplog.set_level("WARNING", logger="jenga.breaker")
    breaker.record(True)
    registry.flush()  # Redis unreachable: falls back, and the failure is counted locally
    assert registry.fallback and registry.snapshot()["fallback"] is True
    assert breaker.snapshot()["fallback"] is True
    assert any(getattr(r, "event", "") == "breaker.fallback" for r in caplog.records)
    for _ in range(3):
        breaker.record(True)
    assert not breaker.admit().allowed  # never "closed forever": the local breaker trips
    redis_server.start()
    wait_for(
        lambda: (registry.refresh(), not registry.fallback)[1], 10, what="Redis to answer again"
    )
    assert breaker.admit().allowed  # back on the shared state, which never tripped
    client.close()


def test_drop_in_for_circuitbreaker(redis_client, namespace):
    registry = BreakerRegistry(redis_client, namespace, bp.BreakerPolicy(failure_rate=0))

    class Shared(SharedCircuitBreaker):
        REGISTRY = registry

    name = f"dropin-{namespace}"

    @circuit(
        cls=Shared,
        failure_threshold=2,
        recovery_timeout=30,
        expected_exception=ConnectionError,
        name=name,
    )
    def call(fail: type[BaseException] | None = None):
        if fail:
            raise fail("down")
        return "ok"

    assert call() == "ok"
    with pytest.raises(ValueError):
        call(ValueError)  # not an expected exception: passes through uncounted
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call(ConnectionError)
    registry.flush()
    with pytest.raises(CircuitBreakerError) as refused:
        call()
    assert isinstance(refused.value, SharedCircuitBreakerError)
    assert name in str(refused.value)
    monitored = CircuitBreakerMonitor.get(name)
    assert isinstance(monitored, Shared)
    assert monitored in list(CircuitBreakerMonitor.get_open())
    assert BreakerStore(redis_client, namespace).read(name)["state"] == "open"
    CircuitBreakerMonitor.circuit_breakers.pop(name, None)


def test_successful_probes_count_towards_k(redis_client, namespace):
    now = [1000.0]
    registry = BreakerRegistry(
        redis_client,
        namespace,
        bp.BreakerPolicy(failure_threshold=1, open_seconds=1, jitter=0, half_open_calls=2),
        clock=lambda: now[0],
    )
    registry.store.caller_clock = True  # steps on the test's clock, not Redis's
    breaker = registry.breaker("svc")
    breaker.record(True)
    registry.flush()
    now[0] += 1.5
    first = breaker.admit()
    breaker.record(False, admission=first)
    assert breaker.state == "half_open"
    second = breaker.admit()
    assert second.probe
    assert not breaker.admit().allowed  # one success + one in flight = K
    breaker.record(False, admission=second)
    assert breaker.state == "closed" and breaker.admit().allowed


def test_drop_in_with_blocks_in_threads_each_report_their_own_call(redis_client, namespace):
    """Threads inside ``with breaker:`` at once each report their own trial-call lease."""
    now = [1000.0]
    registry = BreakerRegistry(
        redis_client,
        namespace,
        bp.BreakerPolicy(failure_threshold=1, open_seconds=1, jitter=0, half_open_calls=3),
        clock=lambda: now[0],
    )
    registry.store.caller_clock = True  # steps on the test's clock, not Redis's

    class Shared(SharedCircuitBreaker):
        REGISTRY = registry

    name = f"threads-{namespace}"

    @circuit(cls=Shared, name=name)
    def call():
        return "ok"

    breaker = CircuitBreakerMonitor.get(name)
    try:
        registry.breaker(name).record(True)
        registry.flush()
        now[0] += 1.5  # half-open: three trial calls may go out
        inside = threading.Barrier(3)
        errors = []

        def trial_call():
            try:
                with breaker:
                    inside.wait(60)  # all three hold a lease at once (generous: CI load)
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=trial_call) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert errors == []
        # Three successful trial calls, each with its own lease: the breaker closes
        # (sharing one lease, two would be lost and it would stay half-open). Judged
        # in Redis: the three threads' replies may reach this process's cache in any
        # order, and an earlier one (still half-open) may be handled last.
        assert registry.store.read_state(name, now[0]).state == "closed"
        assert call() == "ok"
    finally:
        CircuitBreakerMonitor.circuit_breakers.pop(name, None)


def test_failures_reach_redis_at_once_and_the_trip_is_adopted(redis_client, namespace):
    """No flush thread and no flush: the failures alone trip the shared breaker, the
    tripping process refuses from its next call, and successes stay buffered."""
    policy = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=60)
    registry = BreakerRegistry(redis_client, namespace, policy)  # not started
    store = BreakerStore(redis_client, namespace)
    breaker = registry.breaker("svc")
    breaker.record(False)
    assert store.read("svc")["window"]["calls"] == 0  # a success waits for the flush
    breaker.record(True)
    assert store.read("svc")["window"] == {"calls": 2, "failures": 1, "slow": 0}
    breaker.record(True)
    assert breaker.admit().allowed
    breaker.record(True)
    assert store.read("svc")["state"] == "open"
    assert not breaker.admit().allowed  # adopted from the reply, no pub/sub needed
    assert not breaker.has_pending


def test_while_failures_are_counted_calls_ask_redis(redis_client, namespace):
    """Another process's failure trips the breaker: a process that saw the count
    start refuses on its next call, with no pub/sub; a success ends the count and
    calls go back to the cached state."""
    policy = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=60)
    first = BreakerRegistry(redis_client, namespace, policy).breaker("svc")  # not started
    first.record(True)
    first.record(True)
    assert first.admit().allowed  # two of three: still closed
    other = BreakerRegistry(redis_client, namespace, policy).breaker("svc")
    other.record(True)  # the third, in another registry: the trip
    assert not other.admit().allowed
    assert not first.admit().allowed  # asked Redis: refused before any event arrives

    counted = BreakerRegistry(redis_client, namespace, policy).breaker("counted")
    counted.record(True)
    steps = []
    real_step = counted.registry.store.step
    counted.registry.store.step = lambda *a, **kw: steps.append(a[2]) or real_step(*a, **kw)
    assert counted.admit().allowed and steps == ["admit"]
    counted.record(False)  # a success while counting goes at once and ends the count
    assert steps == ["admit", "record"]
    assert all(counted.admit().allowed for _ in range(10)) and len(steps) == 2
