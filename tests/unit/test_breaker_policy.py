"""The pure breaker policy against a small reference model (fuse-style):
random sequences of ask / melt / succeed / probe results / reset / time passing
must give the same answers from both."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from common.guards.breaker import policy as bp

THRESHOLD, OPEN, OPEN_MAX, K, LEASE = 3, 1.0, 4.0, 2, 2.5
POLICY = bp.BreakerPolicy(
    failure_threshold=THRESHOLD,
    failure_rate=0,
    open_seconds=OPEN,
    open_max_seconds=OPEN_MAX,
    half_open_calls=K,
    lease_seconds=LEASE,
    jitter=0.0,
)


class Model:
    """The reference: a few lines that say what the breaker should do."""

    def __init__(self):
        self.tripped_at = None  # None: closed
        self.open_for = 0.0
        self.trips = 0
        self.failures = 0
        self.probes = {}  # lease -> expires
        self.successes = 0

    def view(self, now):
        if self.tripped_at is None:
            return "closed"
        return "open" if now < self.tripped_at + self.open_for else "half_open"

    def trip(self, now):
        self.trips += 1
        self.tripped_at, self.open_for = now, min(OPEN_MAX, OPEN * 2 ** (self.trips - 1))
        self.probes, self.successes, self.failures = {}, 0, 0

    def ask(self, now, lease):
        view = self.view(now)
        if view == "closed":
            return True
        if view == "open":
            return False
        self.probes = {k: v for k, v in self.probes.items() if v > now}
        if len(self.probes) + self.successes < K:
            self.probes[lease] = now + LEASE
            return True
        return False

    def outcome(self, now, failed):
        if self.view(now) != "closed":
            return
        self.failures = self.failures + 1 if failed else 0
        if self.failures >= THRESHOLD:
            self.trip(now)

    def probe(self, now, lease, failed):
        if self.view(now) != "half_open" or self.probes.get(lease, 0) <= now:
            return
        del self.probes[lease]
        if failed:
            self.trip(now)
        else:
            self.successes += 1
            if self.successes >= K:
                self.__init__()


class BreakerVsModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.now = 1000.0
        self.state = bp.BreakerState()
        self.model = Model()
        self.leases = []
        self.counter = 0

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.0, 3.0, 8.0]))
    def time_passes(self, dt):
        self.now += dt

    @rule()
    def ask(self):
        self.counter += 1
        lease = f"l{self.counter}"
        self.state, admission = bp.admit(POLICY, self.state, self.now, lease)
        assert admission.allowed == self.model.ask(self.now, lease)
        if admission.probe:
            self.leases.append(lease)
        if not admission.allowed:
            assert admission.retry_in > 0

    @rule(failed=st.booleans())
    def outcome(self, failed):
        self.state, _ = bp.record(POLICY, self.state, bp.Outcomes().plus(failed), self.now, 0.0)
        self.model.outcome(self.now, failed)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), failed=st.booleans())
    def probe_result(self, data, failed):
        lease = data.draw(st.sampled_from(self.leases))
        self.leases.remove(lease)
        self.state, _ = bp.record_probe(POLICY, self.state, lease, failed, self.now, 0.0)
        self.model.probe(self.now, lease, failed)

    @rule()
    def reset(self):
        self.state, _ = bp.force(POLICY, self.state, "reset", self.now)
        self.model = Model()
        self.leases.clear()

    @invariant()
    def same_view(self):
        assert bp.settle(POLICY, self.state, self.now).state == self.model.view(self.now)


TestBreakerVsModel = BreakerVsModel.TestCase
TestBreakerVsModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_failure_rate_trips_exactly_when_rate_reached(outcomes):
    policy = bp.BreakerPolicy(
        failure_threshold=0, failure_rate=0.5, min_calls=10, window_seconds=60
    )
    state, tripped_at = bp.BreakerState(), None
    for i, failed in enumerate(outcomes):
        state, change = bp.record(policy, state, bp.Outcomes().plus(failed), 1000.0, 0.0)
        if change:
            tripped_at = i
            break
    expected = next(
        (
            i
            for i in range(len(outcomes))
            if i + 1 >= 10 and sum(outcomes[: i + 1]) / (i + 1) >= 0.5
        ),
        None,
    )
    assert tripped_at == expected


def test_slow_calls_trip_and_old_buckets_leave_the_window():
    policy = bp.BreakerPolicy(
        failure_threshold=0, failure_rate=0, slow_call_rate=0.5, min_calls=4, window_seconds=10
    )
    state = bp.BreakerState()
    state, change = bp.record(policy, state, bp.Outcomes(calls=3, slow=3), 100.0, 0.0)
    assert change is None  # below min_calls
    # 11 s later the slow calls have left the window: 4 fast calls do not trip
    state, change = bp.record(policy, state, bp.Outcomes(calls=4), 111.0, 0.0)
    assert change is None
    state, change = bp.record(policy, state, bp.Outcomes(calls=4, slow=4), 112.0, 0.0)
    assert change == bp.Change("closed", "open", "slow-call rate 4/8")


def test_consecutive_failures_are_counted_across_batches():
    policy = bp.BreakerPolicy(failure_threshold=5, failure_rate=0)
    state = bp.BreakerState()
    batch = bp.Outcomes().plus(True).plus(False).plus(True).plus(True)  # trailing 2
    state, _ = bp.record(policy, state, batch, 1.0, 0.0)
    assert state.consecutive == 2
    state, change = bp.record(
        policy, state, bp.Outcomes(calls=3, failures=3, trailing_failures=3), 2.0, 0.0
    )
    assert change is not None and change.reason == "5 consecutive failures"


def test_timed_out_calls_weigh_more_toward_the_threshold():
    """Two timeouts (each held its slot for the whole deadline) trip a threshold of
    five; a success in between starts the count again."""
    policy = bp.BreakerPolicy(failure_threshold=5, failure_rate=0, timeout_weight=3)
    state, change = bp.record(policy, bp.BreakerState(), bp.Outcomes().plus(True, weight=3), 1, 0)
    assert change is None and state.consecutive == 3
    recovered = bp.Outcomes().plus(False).plus(True, weight=3)
    state, change = bp.record(policy, state, recovered, 2.0, 0.0)
    assert change is None and state.consecutive == 3
    state, change = bp.record(policy, state, bp.Outcomes().plus(True, weight=3), 3.0, 0.0)
    assert change is not None and change.reason == "6 consecutive failures"
    assert state.state == bp.OPEN


def test_the_next_trial_of_a_half_open_breaker_is_after_its_trial_and_the_next_open_time():
    """Parked deliveries wait that long, not the few seconds a deferred task waits."""
    policy = bp.BreakerPolicy(open_seconds=5, open_max_seconds=300, jitter=0.2)
    opened = bp.BreakerState(state=bp.OPEN, open_until=100.0, trips=3)
    assert bp.next_trial_in(policy, opened, 90.0, 17.0) == 10.0
    # Half-open from 100 on: a trial of at most 17 s, then the 4th open time (40 s) at its
    # shortest (jitter 20 %).
    assert bp.next_trial_in(policy, opened, 101.0, 17.0) == pytest.approx(17 + 40 * 0.8)
    forced = bp.BreakerState(state=bp.OPEN, forced=True)
    assert bp.next_trial_in(policy, forced, 101.0, 17.0) == 5
    assert bp.next_trial_in(policy, bp.BreakerState(), 101.0, 17.0) == 0


def test_open_time_grows_with_trips_capped_and_jittered():
    policy = bp.BreakerPolicy(open_seconds=5, open_max_seconds=60, jitter=0.2)
    assert [bp.open_duration(policy, n, 0.0) for n in (1, 2, 3, 4, 5, 6)] == [5, 10, 20, 40, 60, 60]
    assert bp.open_duration(policy, 2, 0.999) == pytest.approx(10 * (1 - 0.2 * 0.999))


def test_forced_open_stays_open_until_closed():
    policy = bp.BreakerPolicy()
    state, change = bp.force(policy, bp.BreakerState(), "open", 0.0)
    assert change == bp.Change("closed", "open", "forced open")
    state, admission = bp.admit(policy, state, 10_000.0, "x")
    assert not admission.allowed and admission.retry_in == policy.open_seconds
    state, change = bp.force(policy, state, "close", 10_000.0)
    assert change.new == "closed" and bp.admit(policy, state, 10_000.0, "y")[1].allowed
    with pytest.raises(ValueError):
        bp.force(policy, state, "explode", 0.0)


def test_a_trial_holds_its_slot_at_least_as_long_as_the_longest_attempt():
    """A probe lease shorter than an attempt would admit a second trial beside a live one."""
    from common.config import Settings

    def lease(**values) -> float:
        return bp.policy_from_settings(
            Settings(database_url="postgresql://h/db", redis_url="redis://h", **values)
        ).lease_seconds

    assert lease() == 30.0  # defaults: 5 s connect + 15 s attempt + margin, under the setting
    assert lease(delivery_timeout_seconds=60) == 5 + 60 + bp.PROBE_REPORT_MARGIN_SECONDS
    assert lease(breaker_probe_lease_seconds=90, delivery_timeout_seconds=60) == 90
