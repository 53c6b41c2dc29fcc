"""The breaker registry's cost follows the breakers in use, against real Redis: the
flush and refresh loops visit only breakers called since the last time, idle ones
are dropped from memory (never with outcomes unflushed, never in per-process
fallback), and a breaker used again after eviction reads its state from Redis."""

from __future__ import annotations

import redis

from common.guards.breaker import policy as bp
from common.guards.breaker.compat import SharedCircuitBreaker
from common.guards.breaker.registry import BreakerRegistry
from common.guards.breaker.store import BreakerStore
from common.redis.keys import RedisKeys
from tests.support.servers import free_port

POLICY = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=60)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def registry_for(client, namespace, clock=None, idle=600.0) -> BreakerRegistry:
    return BreakerRegistry(
        client, namespace, POLICY, clock=clock or FakeClock(), idle_evict_seconds=idle
    )


def call(registry: BreakerRegistry, name: str, failed: bool = False) -> None:
    breaker = registry.breaker(name)
    admission = breaker.admit()
    assert admission.allowed
    breaker.record(failed, 0.01, admission)


def spy(registry: BreakerRegistry) -> dict[str, list]:
    """Record what each flush and refresh asks Redis for."""
    seen: dict[str, list] = {"flushed": [], "refreshed": []}
    store = registry.store
    record_many, read_states = store.record_many, store.read_states

    def recording(batches, *args, **kwargs):
        seen["flushed"].append(sorted(name for name, _, _ in batches))
        return record_many(batches, *args, **kwargs)

    def reading(names, *args, **kwargs):
        if names:  # none: no round trip
            seen["refreshed"].append(sorted(names))
        return read_states(names, *args, **kwargs)

    store.record_many, store.read_states = recording, reading
    return seen


def test_flush_and_refresh_visit_only_the_breakers_in_use(redis_client, namespace):
    registry = registry_for(redis_client, namespace)
    for i in range(100):
        call(registry, f"webhook:h{i}.example")
    seen = spy(registry)
    registry.flush()
    registry.refresh()
    assert len(seen["flushed"][0]) == 100 and len(seen["refreshed"][0]) == 100

    registry.flush()  # nothing recorded since: no round trip
    registry.refresh()  # nothing called since: a ping, no state read
    assert len(seen["flushed"]) == 1 and len(seen["refreshed"]) == 1

    call(registry, "webhook:h7.example")
    registry.flush()
    registry.refresh()
    assert seen["flushed"][-1] == seen["refreshed"][-1] == ["webhook:h7.example"]
    assert len(registry.breakers()) == 100  # all still held (not idle long enough)


def test_idle_breakers_are_dropped_and_a_busy_one_never(redis_client, namespace):
    clock = FakeClock()
    registry = registry_for(redis_client, namespace, clock)
    for i in range(30):
        call(registry, f"webhook:h{i}.example")
    registry.flush()
    registry.refresh()
    for _ in range(4):  # the busy one is called in every refresh period, 200 s apart
        clock.now += 200
        call(registry, "webhook:busy.example")
        registry.flush()
        registry.refresh()
    dropped = registry.evict_idle()
    assert len(dropped) == 30 and "webhook:busy.example" not in dropped
    assert [b.name for b in registry.breakers()] == ["webhook:busy.example"]


def test_unflushed_outcomes_keep_a_breaker(redis_client, namespace):
    clock = FakeClock()
    registry = registry_for(redis_client, namespace, clock)
    breaker = registry.breaker("webhook:late.example")
    registry.refresh()
    clock.now += 601
    breaker.record(False, 0.01)  # an outcome recorded without a fresh admission
    assert registry.evict_idle() == []
    registry.flush()
    assert registry.evict_idle() == ["webhook:late.example"]


def test_nothing_is_dropped_in_per_process_fallback():
    """Redis unreachable: the per-process state is the only one, so it stays."""
    clock = FakeClock()
    client = redis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    registry = registry_for(client, "nowhere", clock)
    breaker = registry.breaker("webhook:x.example")
    assert registry.fallback
    for _ in range(3):
        breaker.record(True, 0.01, breaker.admit())
    assert breaker.state == bp.OPEN  # opened locally: known nowhere else
    clock.now += 10_000
    assert registry.evict_idle() == []
    assert registry.breakers() == [breaker]
    client.close()


def test_a_breaker_used_again_after_eviction_reads_its_state_from_redis(redis_client, namespace):
    clock = FakeClock()
    registry = registry_for(redis_client, namespace, clock)
    first = registry.breaker("webhook:back.example")
    first.admit()
    registry.refresh()
    BreakerStore(redis_client, namespace).force("webhook:back.example", "open", POLICY)
    clock.now += 601
    assert registry.evict_idle() == ["webhook:back.example"]
    assert first.evicted

    again = registry.breaker("webhook:back.example")
    assert again is not first
    assert not again.admit().allowed  # open, as the fleet knows it


def test_a_call_in_flight_through_a_dropped_breaker_is_still_counted(redis_client, namespace):
    clock = FakeClock()
    registry = registry_for(redis_client, namespace, clock)
    breaker = registry.breaker("webhook:slow.example")
    admission = breaker.admit()
    registry.refresh()
    clock.now += 601
    assert registry.evict_idle() == ["webhook:slow.example"]
    breaker.record(True, 0.01, admission)  # the call that was in flight ends
    registry.flush()
    window = redis_client.hgetall(RedisKeys(namespace).breaker_window("webhook:slow.example"))
    assert sum(int(v) for f, v in window.items() if f.startswith("c")) == 1


def test_the_drop_in_asks_again_once_its_breaker_was_dropped(redis_client, namespace):
    clock = FakeClock()
    registry = registry_for(redis_client, namespace, clock)

    class Breaker(SharedCircuitBreaker):
        REGISTRY = registry

    guarded = Breaker(name="notify:drop-in")
    with guarded:
        pass
    old = guarded.shared
    registry.flush()
    registry.refresh()
    clock.now += 601
    assert registry.evict_idle() == ["notify:drop-in"]
    with guarded:
        pass
    assert guarded.shared is not old and not guarded.shared.evicted
    assert registry.breakers() == [guarded.shared]
