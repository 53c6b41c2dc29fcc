"""One sync loop per process for every limit, and idle limits dropped from memory,
against real Redis: no thread per limit, the loop visits only the limits in use, an
idle limit is evicted (a busy or fallback one never), and a service used again after
eviction works from the state Redis kept."""

from __future__ import annotations

import gc
import os
import threading
import time

from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.registry import LimitRegistry, process_limits
from common.guards.limit.shared import SharedLimit
from common.redis.client import make_redis
from common.redis.keys import RedisKeys
from tests.support.servers import free_port, wait_for


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("jenga-limit")]


def builder(redis_client, namespace, registry, clock, **kwargs):
    def build(service: str) -> SharedLimit:
        return SharedLimit(
            redis_client,
            namespace,
            service,
            kwargs.get("options", AIMDOptions(initial=4, min=1, max=8)),
            clock,
            registry=registry,
            idle_evict_seconds=kwargs.get("idle", 600.0),
        )

    return build


def use_once(limit: SharedLimit) -> None:
    lease = limit.try_acquire()
    assert lease is not None
    lease.release(False, 0.01)


def test_one_thread_syncs_every_limit_of_the_process(redis_client, namespace):
    """200 services used at once: one sync thread, and every idle slot goes back."""
    registry = LimitRegistry()
    build = builder(redis_client, namespace, registry, time.time)
    before = set(threading.enumerate())  # other tests' loops may still run: not counted
    try:
        leases = [registry.get(f"webhook:h{i}.example", build).try_acquire() for i in range(200)]
        assert all(leases)
        assert [t.name for t in threading.enumerate() if t not in before] == ["jenga-limit-sync"]
        for lease in leases:
            lease.release(False, 0.01)
        # The loop returns the idle slots, then forgets the limits it found empty.
        wait_for(lambda: registry.active() == [], 10, what="every limit out of the loop")
        keys = RedisKeys(namespace)
        assert (
            sum(redis_client.zcard(keys.limit_leases(f"webhook:h{i}.example")) for i in range(200))
            == 0
        )
        assert [t.name for t in threading.enumerate() if t not in before] == ["jenga-limit-sync"]
    finally:
        registry.close()


def test_the_loop_visits_only_the_limits_in_use(redis_client, namespace):
    registry = LimitRegistry(background=False)
    build = builder(redis_client, namespace, registry, FakeClock())
    idle = [registry.get(f"webhook:idle{i}.example", build) for i in range(50)]
    for limit in idle:
        use_once(limit)
    registry.sync_active()  # reports the samples, keeps the slots one more interval
    registry.sync_active()  # returns them: empty, out of the loop
    assert registry.active() == []
    busy = registry.get("webhook:busy.example", build)
    lease = busy.try_acquire()
    registry.sync_active()
    registry.sync_active()
    assert registry.active() == [busy]
    lease.release(False, 0.01)


def test_idle_limits_are_evicted_and_a_busy_one_never(redis_client, namespace):
    clock = FakeClock()
    registry = LimitRegistry(background=False)
    build = builder(redis_client, namespace, registry, clock, idle=600.0)
    for i in range(30):
        use_once(registry.get(f"webhook:h{i}.example", build))
    busy = registry.get("webhook:busy.example", build)
    held = busy.try_acquire()
    registry.sync_active()
    registry.sync_active()

    clock.now += 599
    assert registry.evict_idle() == []
    clock.now += 2
    evicted = registry.evict_idle()
    assert len(evicted) == 30 and "webhook:busy.example" not in evicted
    assert registry.limits() == [busy]

    held.release(False, 0.01)  # the call ends: idle from now on
    registry.sync_active()
    registry.sync_active()
    assert registry.evict_idle() == []  # just used
    clock.now += 601
    assert registry.evict_idle() == ["webhook:busy.example"]
    assert registry.limits() == [] and registry.active() == []


def test_a_service_used_again_after_eviction_reads_its_limit_from_redis(redis_client, namespace):
    clock = FakeClock()
    registry = LimitRegistry(background=False)
    service = "webhook:back.example"
    first = registry.get(service, builder(redis_client, namespace, registry, clock))
    use_once(first)
    redis_client.hset(RedisKeys(namespace).limit(service), "limit", 6)  # what the fleet learnt
    registry.sync_active()
    registry.sync_active()
    clock.now += 601
    assert registry.evict_idle() == [service]

    # Its successor starts from LIMIT_INITIAL=2 in memory, but takes 6 slots: Redis's.
    build = builder(
        redis_client, namespace, registry, clock, options=AIMDOptions(initial=2, min=1, max=8)
    )
    again = registry.get(service, build)
    assert again is not first
    leases = [again.try_acquire() for _ in range(7)]
    assert sum(lease is not None for lease in leases) == 6
    assert again.snapshot()["limit"] == 6
    for lease in leases:
        if lease is not None:
            lease.release(False, 0.01)


def test_a_limit_on_its_fallback_limit_is_not_evicted():
    """Redis unreachable: the limit keeps its retry backoff, so it stays."""
    clock = FakeClock()
    client = make_redis(f"redis://127.0.0.1:{free_port()}/0", 0.2)  # nothing listens
    registry = LimitRegistry(background=False)
    limit = SharedLimit(
        client, "nowhere", "webhook:x.example", AIMDOptions(), clock, registry=registry
    )
    registry.get("webhook:x.example", lambda _: limit)
    lease = limit.try_acquire()
    assert lease is not None and lease.fallback
    lease.release(False, 0.01)
    clock.now += 10_000
    assert registry.evict_idle() == []
    client.close()


def test_a_forked_child_runs_its_own_loop(redis_client, namespace):
    """The parent's thread does not survive a fork: the child's limits get a loop of its own."""
    registry = LimitRegistry()
    build = builder(redis_client, namespace, registry, time.time)
    parent = registry.get("webhook:fork.example", build)
    held = parent.try_acquire()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = registry.active() == [] and not sync_threads()
            lease = registry.get("webhook:fork.example", build).try_acquire()
            ok = ok and lease is not None and len(sync_threads()) == 1
            ok = ok and process_limits() is not None
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)
    assert registry.active() == [parent]
    held.release(False, 0.01)
    registry.close()


def test_an_evicted_limit_leaves_nothing_behind(redis_client, namespace):
    """Not even a fork hook: 1,000 services called and evicted leave the object count
    where one service left it (a hook per limit would add four objects each)."""
    clock = FakeClock()
    registry = LimitRegistry(background=False)
    build = builder(redis_client, namespace, registry, clock)

    def call_and_evict(services: range) -> int:
        for i in services:
            use_once(registry.get(f"webhook:h{i}.example", build))
        registry.sync_active()
        registry.sync_active()
        clock.now += 601
        assert len(registry.evict_idle()) == len(services)
        gc.collect()
        return len(gc.get_objects())

    one = call_and_evict(range(1))
    assert call_and_evict(range(1, 1001)) - one < 1000
