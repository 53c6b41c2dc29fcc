"""Level 1: the dependency state machine (pure, checked against a model) and
its monitor against a real Redis that is killed and restarted."""

from __future__ import annotations

import time

import redis
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common.config import load_settings
from common.connections.dependency import (
    Dependencies,
    DependencyDown,
    DependencyMonitor,
    DependencyState,
    connection_errors,
    initial_state,
    next_delay,
    retry_options,
    transition,
)
from common.connections.probes import CheckResult, check_redis
from common.redis.client import make_redis
from common.support.masking import SECRETS
from tests.support.servers import free_port, wait_for

OK = CheckResult(True, 0.002)


def failed(error: str = "ConnectionError: refused") -> CheckResult:
    return CheckResult(False, 0.001, error)


def test_starts_connecting_then_follows_checks():
    state = initial_state("redis", now=100.0)
    assert (state.state, state.changed_at, state.attempt) == ("connecting", 100.0, 0)
    state = transition(state, failed("ConnectionError: refused"), now=101.0)
    assert (state.state, state.changed_at, state.attempt, state.last_error) == (
        "down",
        101.0,
        1,
        "ConnectionError: refused",
    )
    state = transition(state, failed("ConnectionError: timeout"), now=102.0)
    assert (state.state, state.changed_at, state.attempt, state.last_error) == (
        "down",
        101.0,
        2,
        "ConnectionError: timeout",
    )
    state = transition(state, OK, now=103.0)
    # The last error is kept after recovery: operators ask "what was it?"
    assert (state.state, state.changed_at, state.attempt, state.last_error) == (
        "up",
        103.0,
        0,
        "ConnectionError: timeout",
    )
    assert state.latency_seconds == 0.002 and state.checked_at == 103.0


def test_delay_is_the_interval_while_up_and_jittered_backoff_while_down():
    up = DependencyState("redis", "up", attempt=0)
    assert next_delay(up, interval=1.0, base=0.5, cap=5.0) == 1.0
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (40, 5.0)]:
        down = DependencyState("redis", "down", attempt=attempt)
        assert next_delay(down, 1.0, 0.5, 5.0, rand=lambda lo, hi: hi) == ceiling
        assert next_delay(down, 1.0, 0.5, 5.0, rand=lambda lo, hi: lo) == 0.0


def test_processes_failing_together_do_not_retry_in_lock_step():
    down = DependencyState("postgres", "down", attempt=4)
    delays = {round(next_delay(down, 1.0, 0.5, 5.0), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(0 <= d <= 4.0 for d in delays)


@given(st.lists(st.booleans(), max_size=60), st.floats(0.01, 2), st.floats(0.01, 30))
def test_delay_never_exceeds_the_cap(results, base, cap):
    cap = max(cap, base)
    state = initial_state("broker", 0.0)
    for i, ok in enumerate(results):
        state = transition(state, OK if ok else failed(), float(i))
        assert 0 <= next_delay(state, 1.0, base, cap) <= (1.0 if ok else cap)


class DependencyModel(RuleBasedStateMachine):
    """Random checks and time on the real state machine and on a few lines of model."""

    def __init__(self):
        super().__init__()
        self.now = 0.0
        self.real = initial_state("postgres", self.now)
        self.model = {"state": "connecting", "changed_at": 0.0, "failures": 0, "error": None}

    @rule(seconds=st.floats(0, 100))
    def time_passes(self, seconds):
        self.now += seconds

    @rule(ok=st.booleans(), error=st.sampled_from(["E1", "E2"]))
    def check(self, ok, error):
        self.real = transition(self.real, OK if ok else failed(error), self.now)
        new = "up" if ok else "down"
        if new != self.model["state"]:
            self.model["changed_at"] = self.now
        self.model["state"] = new
        self.model["failures"] = 0 if ok else self.model["failures"] + 1
        if not ok:
            self.model["error"] = error

    @invariant()
    def agrees(self):
        assert self.real.state == self.model["state"]
        assert self.real.changed_at == self.model["changed_at"]
        assert self.real.attempt == self.model["failures"]
        assert self.real.last_error == self.model["error"]
        assert self.real.up == (self.model["state"] == "up")


TestDependencyModel = DependencyModel.TestCase
TestDependencyModel.settings = hsettings(max_examples=60, stateful_step_count=30, deadline=None)


def test_monitor_notices_loss_and_reconnects(redis_server):
    client = make_redis(redis_server.url, timeout=0.5)
    monitor = DependencyMonitor(
        "redis", lambda: check_redis(client), interval=0.1, base=0.05, cap=0.3
    )
    changes = []
    monitor.on_change(lambda old, new: changes.append((old.state, new.state)))
    assert monitor.state.state == "connecting"
    monitor.start()
    try:
        wait_for(lambda: monitor.state.up, 5, what="redis up")
        redis_server.stop()
        wait_for(lambda: monitor.state.state == "down", 5, what="redis down")
        assert "Connection" in monitor.state.last_error
        attempts_before = monitor.state.attempt
        redis_server.start()
        wait_for(lambda: monitor.state.up, 5, what="redis back up")
        assert attempts_before >= 1
        assert changes[:3] == [("connecting", "up"), ("up", "down"), ("down", "up")]
    finally:
        monitor.stop()
        client.close()


def test_boot_never_waits_and_reports_every_missing_dependency(settings_env):
    dead = free_port()
    env = dict(
        settings_env,
        DATABASE_URL=f"postgresql://jenga:pgsecretpass@127.0.0.1:{dead}/jenga",
        REDIS_URL=f"redis://:redissecretpass@127.0.0.1:{dead}/0",
        BROKER_URL=f"redis://:brokersecretpass@127.0.0.1:{dead}/1",
    )
    settings = load_settings(env, wait_seconds=0)
    from common.connections.database import make_engine

    engine = make_engine(settings)
    client = make_redis(settings.redis_url, 0.5)
    started = time.perf_counter()
    deps = Dependencies.from_settings(settings, engine=engine, redis=client).start()
    try:
        assert time.perf_counter() - started < 0.2  # start() returns at once
        wait_for(
            lambda: all(s.state == "down" for s in deps.snapshot().values()), 10, what="all down"
        )
        assert not deps.ready()
        assert deps.missing() == ["postgres", "redis", "broker"]
        for state in deps.snapshot().values():
            assert state.last_error
            for secret in ("pgsecretpass", "redissecretpass", "brokersecretpass"):
                assert secret not in state.last_error
        assert {"pgsecretpass", "redissecretpass"} <= SECRETS._secrets
    finally:
        deps.stop()
        engine.dispose()
        client.close()


def test_retry_convention_covers_driver_connection_errors():
    import sqlalchemy.exc

    options = retry_options()
    assert options["max_retries"] is None and options["retry_jitter"] is True
    assert isinstance(options["retry_backoff"], int)  # celery's jitter uses randrange
    for error in (
        DependencyDown,
        redis.exceptions.ConnectionError,
        sqlalchemy.exc.OperationalError,
    ):
        assert issubclass(error, options["autoretry_for"])
    assert not issubclass(ValueError, connection_errors())
    assert (
        str(DependencyDown("postgres", "server closed")) == "postgres is unreachable: server closed"
    )
