"""The fleet-wide limit against real Redis: exclusive leases, reclaimed
expiries, window updates, the Lua rule agreeing with the Python one, and the
fallback when Redis is gone."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.guards.limit.aimd import AIMDOptions, Window, update
from common.guards.limit.shared import SharedLimit
from common.guards.limit.store import list_limits
from common.redis.client import make_redis
from common.redis.keys import RedisKeys
from tests.support.servers import ROOT, wait_for


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fixed(n: int, **kwargs) -> AIMDOptions:
    return AIMDOptions(initial=n, min=n, max=n, **kwargs)


def make(redis_client, namespace, service="svc", options=None, clock=None, **kwargs) -> SharedLimit:
    """A limit on ``clock``; on a test clock (the default) its syncs run on it, not on Redis's."""
    kwargs.setdefault("background", False)
    clock = clock or FakeClock()
    limit = SharedLimit(redis_client, namespace, service, options, clock, **kwargs)
    limit.store.caller_clock = clock is not time.time
    return limit


# --- exclusivity -----------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, redis
    from common.guards.limit.aimd import AIMDOptions
    from common.guards.limit.shared import SharedLimit
    url, ns, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limit = SharedLimit(redis.Redis.from_url(url, decode_responses=True), ns, "svc",
                        AIMDOptions(initial=5, min=5, max=5), lease_ttl=1.0)
    leases = [limit.try_acquire() for _ in range(wanted)]
    print("held", sum(lease is not None for lease in leases), flush=True)
    sys.stdin.readline()
    for lease in leases:
        if lease is not None:
            lease.release(False, 0.01)
    limit.close()
    print("done", flush=True)
    """
)


def _holder(redis_url, namespace, wanted) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, namespace, str(wanted)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _held(proc: subprocess.Popen) -> int:
    line = proc.stdout.readline().split()
    assert line and line[0] == "held", line
    return int(line[1])


def test_leases_are_exclusive_across_processes_and_a_killed_one_is_reclaimed(
    redis_client, redis_url, namespace
):
    procs = [_holder(redis_url, namespace, 4) for _ in range(3)]
    try:
        held = [_held(proc) for proc in procs]
        assert sum(held) == 5, held  # the fleet got exactly the limit, no more
        leases_key = RedisKeys(namespace).key("limit", "svc", "leases")
        assert redis_client.zcard(leases_key) == 5

        # SIGKILL a process that holds slots: nothing releases them, but after
        # the lease TTL (1 s) the fleet may use them again.
        victim = next(p for p, n in zip(procs, held, strict=True) if n > 0)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        survivor_slots = sum(n for p, n in zip(procs, held, strict=True) if p is not victim)
        newcomer = make(redis_client, namespace, options=fixed(5), clock=time.time, lease_ttl=1.0)
        got = wait_for(lambda: newcomer.try_acquire(), 10, what="a reclaimed slot")
        assert got is not None
        extra = [newcomer.try_acquire() for _ in range(5)]
        assert 1 + sum(e is not None for e in extra) == 5 - survivor_slots
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.stdin.close()
                proc.wait(10)


def test_threads_in_two_processes_never_exceed_the_limit(redis_client, namespace):
    limits = [
        make(redis_client, namespace, options=fixed(4), clock=time.time, background=True)
        for _ in range(2)
    ]
    lock = threading.Lock()
    in_flight = [0]
    peak = [0]
    refused = [0]
    stop = time.monotonic() + 1.0

    def worker(limit: SharedLimit) -> None:
        while time.monotonic() < stop:
            lease = limit.try_acquire()
            if lease is None:
                with lock:
                    refused[0] += 1
                time.sleep(0.001)
                continue
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.002)
            with lock:
                in_flight[0] -= 1
            lease.release(False, 0.002)

    threads = [threading.Thread(target=worker, args=(limits[i % 2],)) for i in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for limit in limits:
            limit.close()
    assert peak[0] <= 4
    assert peak[0] == 4  # the limit was reached, so it was really shared and used
    assert refused[0] > 0


def test_a_forked_child_starts_without_the_parents_slots(redis_client, namespace):
    """The child neither hands out the parent's idle slots nor counts its busy ones."""
    limit = make(redis_client, namespace, options=fixed(3), clock=time.time)
    busy = limit.try_acquire()
    limit.try_acquire().release(False, 0.01)  # one idle slot in the parent's allotment
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = limit.snapshot()["local"] == {"held": 0, "busy": 0}
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)
    assert limit.snapshot()["local"] == {"held": 2, "busy": 1}  # the parent keeps its own
    busy.release(False, 0.01)


def test_expired_leases_are_reclaimed(redis_client, namespace):
    clock = FakeClock()
    first = make(redis_client, namespace, options=fixed(3), clock=clock, lease_ttl=5.0)
    second = make(redis_client, namespace, options=fixed(3), clock=clock, lease_ttl=5.0)
    held = [first.try_acquire() for _ in range(3)]
    assert all(held)
    assert second.try_acquire() is None

    clock.advance(4.0)
    first.sync()  # renewal keeps them
    clock.advance(4.0)
    assert second.try_acquire() is None

    clock.advance(5.1)  # first stopped renewing (frozen or dead)
    reclaimed = [second.try_acquire() for _ in range(4)]
    assert sum(lease is not None for lease in reclaimed) == 3
    # The frozen process learns its slots are gone and does not hand them out again.
    first.sync()
    for lease in held:
        lease.release(False, 0.1)
    assert first.snapshot()["local"] == {"held": 0, "busy": 0}
    assert first.try_acquire() is None


def test_workers_an_hour_off_agree_on_when_a_lease_lapsed(redis_client, namespace):
    """A lease granted to a worker whose clock is an hour behind lasts its TTL on Redis's
    clock for a worker an hour ahead too: held until then, free after."""
    behind, ahead = (
        SharedLimit(
            redis_client, namespace, "svc", fixed(1), clock, background=False, lease_ttl=0.5
        )
        for clock in (lambda: time.time() - 3600, lambda: time.time() + 3600)
    )
    held = behind.try_acquire()
    assert held is not None
    assert ahead.try_acquire() is None  # on its own clock, the lease lapsed an hour ago
    assert list_limits(redis_client, namespace)[0]["in_flight"] == 1
    time.sleep(0.6)  # the holder stopped renewing: its lease lapses on Redis's clock
    assert ahead.try_acquire() is not None
    behind.sync()
    held.release(False, 0.01)
    assert behind.snapshot()["local"] == {"held": 0, "busy": 0}


def test_release_is_idempotent_and_records_one_sample(redis_client, namespace):
    clock = FakeClock()
    limit = make(redis_client, namespace, clock=clock)
    lease = limit.try_acquire()
    lease.release(True, 0.5)
    lease.release(False, 9.0)
    assert lease.released
    limit.sync()
    window = limit.snapshot()["window"]
    assert (window["count"], window["drops"], window["avg_latency"]) == (1, 1, 0.5)


# --- the limit moves ----------------------------------------------------------------


def test_limit_decreases_on_drops(redis_client, namespace, caplog):
    clock = FakeClock()
    opts = AIMDOptions(initial=20, min=2, max=50, window=1.0)
    limit = make(redis_client, namespace, options=opts, clock=clock)
    lease = limit.try_acquire()
    lease.release(dropped=True, latency=0.05)
    clock.advance(1.0)
    with caplog.at_level(logging.INFO, logger="jenga.limit"):
        limit.sync()
    assert limit.snapshot()["limit"] == 18
    changed = [r for r in caplog.records if getattr(r, "event", None) == "limit.changed"]
    assert [(r.service, r.old, r.new, r.reason) for r in changed] == [("svc", 20, 18, "drop")]

    # Repeated failing windows walk it down to the floor and no further.
    for _ in range(30):
        lease = limit.try_acquire()
        lease.release(dropped=True, latency=0.05)
        clock.advance(1.0)
        limit.sync()
    assert limit.snapshot()["limit"] == 2


def test_limit_grows_under_load_and_not_when_idle(redis_client, namespace):
    clock = FakeClock()
    opts = AIMDOptions(initial=4, min=1, max=6, step=1, window=1.0, latency_target=1.0)
    limit = make(redis_client, namespace, options=opts, clock=clock)

    lone = limit.try_acquire()  # 1 in flight < 4/2: no evidence of demand
    lone.release(False, 0.01)
    clock.advance(1.0)
    limit.sync()
    assert limit.snapshot()["limit"] == 4

    for expected in (5, 6, 6):
        leases = [limit.try_acquire() for _ in range(3)]  # >= half the limit
        for lease in leases:
            lease.release(False, 0.01)
        clock.advance(1.0)
        limit.sync()
        assert limit.snapshot()["limit"] == expected


def test_slow_calls_count_as_drops(redis_client, namespace):
    clock = FakeClock()
    opts = AIMDOptions(initial=10, latency_target=0.2, window=1.0)
    limit = make(redis_client, namespace, options=opts, clock=clock)
    for _ in range(6):
        lease = limit.try_acquire()
        lease.release(False, 0.5)
    clock.advance(1.0)
    limit.sync()
    snap = limit.snapshot()
    assert snap["limit"] == 9
    assert snap["window"]["last"]["reason"] == "latency"


def test_a_lower_limit_takes_idle_slots_back(redis_client, namespace):
    clock = FakeClock()
    opts = AIMDOptions(initial=10, min=1, max=10, backoff_ratio=0.5, window=1.0)
    limit = make(redis_client, namespace, options=opts, clock=clock)
    leases = [limit.try_acquire() for _ in range(8)]
    for lease in leases:
        lease.release(True, 0.01)
    clock.advance(1.0)
    limit.sync()  # limit 10 -> 5; the process may keep at most 5 slots
    snap = limit.snapshot()
    assert snap["limit"] == 5
    assert snap["in_flight"] <= 5
    assert sum(limit.try_acquire() is not None for _ in range(8)) == 5


# --- Lua and Python agree -------------------------------------------------------------


@st.composite
def aimd_options(draw) -> AIMDOptions:
    low = draw(st.integers(1, 50))
    high = draw(st.integers(low, 400))
    return AIMDOptions(
        initial=draw(st.integers(low, high)),
        min=low,
        max=high,
        backoff_ratio=draw(st.floats(0.05, 0.99)),
        step=draw(st.integers(1, 20)),
        latency_target=draw(st.floats(0.001, 10.0)),
        window=1.0,
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    opts=aimd_options(),
    limit=st.integers(1, 500),
    count=st.integers(0, 5000),
    drops_share=st.floats(0, 1),
    latency_us=st.integers(0, 10**10),
    peaks=st.lists(st.integers(1, 300), max_size=4),
)
def test_lua_rule_agrees_with_python_rule(
    redis_client, namespace, opts, limit, count, drops_share, latency_us, peaks
):
    drops = int(count * drops_share)
    latency_us = latency_us if count else 0
    keys = RedisKeys(namespace)
    state, peaks_key = keys.key("limit", "svc"), keys.key("limit", "svc", "peaks")
    redis_client.delete(state, peaks_key, keys.key("limit", "svc", "leases"))
    redis_client.hset(
        state,
        mapping={
            "limit": limit,
            "window_start": 0,
            "count": count,
            "drops": drops,
            "latency_us": latency_us,
        },
    )
    if peaks:
        redis_client.hset(peaks_key, mapping={f"p{i}": p for i, p in enumerate(peaks)})

    shared = make(redis_client, namespace, options=opts, clock=FakeClock(10.0))
    shared.sync_interval = 1.0
    shared.try_acquire()  # the first round trip closes the window

    window = Window.from_counters(count, drops, sum(peaks), latency_us)
    assert int(redis_client.hget(state, "limit")) == update(limit, window, opts)


# --- Redis unreachable ---------------------------------------------------------------


def test_redis_unreachable_falls_back_to_a_local_limit(redis_server, caplog):
    client = make_redis(redis_server.url, timeout=0.5)
    clock = FakeClock()
    opts = AIMDOptions(initial=10, min=2, max=20)
    limit = SharedLimit(
        client, "fb", "svc", opts, clock, background=False, retry_base=1.0, retry_cap=1.0
    )
    held = limit.try_acquire()
    assert held is not None and not held.fallback
    assert limit.snapshot()["fallback"] is False

    redis_server.stop()
    with caplog.at_level(logging.INFO, logger="jenga.limit"):
        first = limit.try_acquire()
        refused = limit.try_acquire()
    assert first is not None and first.fallback
    assert (
        refused is None
    )  # conservative: options.min calls in flight per process, Redis slots included
    snap = limit.snapshot()
    assert snap["fallback"] is True and snap["limit"] == 2 and snap["in_flight"] == 2
    events = [r for r in caplog.records if getattr(r, "event", None) == "limit.fallback"]
    assert len(events) == 1 and "ConnectionError" in events[0].error
    held.release(False, 0.01)  # its Redis slot is not handed out again while Redis is away
    second = limit.try_acquire()
    assert second is not None and second.fallback
    assert limit.try_acquire() is None
    first.release(False, 0.01)
    second.release(True, 0.01)

    redis_server.start()
    clock.advance(1.5)  # past the retry backoff
    with caplog.at_level(logging.INFO, logger="jenga.limit"):
        back = limit.try_acquire()
    assert back is not None and not back.fallback
    assert limit.snapshot()["fallback"] is False
    assert any(getattr(r, "event", None) == "limit.recovered" for r in caplog.records)
    back.release(False, 0.01)
    client.close()


def test_redis_is_not_retried_on_every_call(redis_server):
    client = make_redis(redis_server.url, timeout=0.5)
    clock = FakeClock()
    limit = SharedLimit(
        client,
        "fb",
        "svc",
        AIMDOptions(min=1),
        clock,
        background=False,
        retry_base=5.0,
        retry_cap=5.0,
    )
    redis_server.stop()
    lease = limit.try_acquire()
    assert lease is not None and lease.fallback
    lease.release(False, 0.01)
    started = time.perf_counter()
    for _ in range(1000):
        limit.try_acquire().release(False, 0.01)
    assert (time.perf_counter() - started) / 1000 < 0.001  # no connect attempt per call
    client.close()


# --- reading ---------------------------------------------------------------------------


def test_snapshot_and_list_limits(redis_client, namespace):
    clock = FakeClock()
    a = make(
        redis_client,
        namespace,
        "hooks.example.com",
        options=AIMDOptions(initial=7, min=3, max=9),
        clock=clock,
    )
    b = make(redis_client, namespace, "api.other:8443", clock=clock)
    lease = a.try_acquire()
    b.try_acquire().release(False, 0.1)
    b.sync()
    snap = a.snapshot()
    assert {k: snap[k] for k in ("service", "limit", "in_flight", "min", "max", "fallback")} == {
        "service": "hooks.example.com",
        "limit": 7,
        "in_flight": 1,
        "min": 3,
        "max": 9,
        "fallback": False,
    }
    assert snap["window"]["seconds"] == 1.0
    listed = list_limits(redis_client, namespace, now=clock.now)
    assert [view["service"] for view in listed] == ["api.other:8443", "hooks.example.com"]
    assert listed[0]["window"]["count"] == 1
    lease.release(False, 0.1)
    assert list_limits(redis_client, f"{namespace}-empty") == []


def test_unusable_service_name_is_refused(redis_client, namespace):
    for bad in ("has spaces", "", "{tag}", "x" * 301):
        with pytest.raises(ValueError, match="not usable as a limit name"):
            make(redis_client, namespace, bad)
    make(redis_client, namespace, "webhook:[::1]:8443")  # hosts, IPv6 and ports are fine


def test_from_settings(redis_client, settings):
    limit = SharedLimit.from_settings(redis_client, settings, "svc", background=False)
    assert limit.namespace == settings.jenga_namespace
    assert limit.lease_ttl == settings.limit_lease_ttl_seconds
    assert limit.options.initial == settings.limit_initial


def test_background_thread_renews_and_returns_idle_slots(redis_client, namespace):
    limit = make(
        redis_client, namespace, options=fixed(3), clock=time.time, background=True, lease_ttl=0.5
    )
    other = make(redis_client, namespace, options=fixed(3), clock=time.time, lease_ttl=0.5)
    try:
        busy = limit.try_acquire()
        idle = [limit.try_acquire(), limit.try_acquire()]
        for lease in idle:
            lease.release(False, 0.01)
        # The idle ones go back to the fleet within a couple of sync intervals...
        got = wait_for(lambda: other.try_acquire(), 5, what="an idle slot returned to the fleet")
        assert got is not None
        got.release(False, 0.01)
        # ...while the busy one outlives its TTL because it is renewed.
        time.sleep(1.0)
        assert sum(other.try_acquire() is not None for _ in range(3)) == 2
        busy.release(False, 0.01)
    finally:
        limit.close()
