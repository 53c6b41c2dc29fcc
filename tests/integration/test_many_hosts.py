"""Issue 12 end to end, against real Redis: after calls to 300 distinct receivers go
idle, the process holds no breaker or limit object for them and no thread more than
it had for the first one, the metrics keep at most METRICS_MAX_SERVICES + 1 series per
family, a busy service is never dropped, and one used again after eviction works from
the state Redis kept."""

from __future__ import annotations

import gc
import threading
import weakref

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.guards.breaker.store import BreakerStore
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.registry import LimitRegistry
from common.guards.limit.shared import SharedLimit
from common.guards.names import webhook_service
from common.health.fleet_metrics import FleetCollector, FleetMetrics
from tests.support.servers import wait_for

HOSTS = 300
MAX_SERVICES = 10
IDLE = 600.0


class Clock:
    def __init__(self, now: float = 1_700_000_400.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Process:
    """One worker process's guards and metrics, as ``GuardedTask`` and delivery use them."""

    def __init__(self, client, namespace, clock: Clock):
        self.client, self.namespace, self.clock = client, namespace, clock
        self.breakers = BreakerRegistry(
            client, namespace, bp.BreakerPolicy(), clock=clock, idle_evict_seconds=IDLE
        ).start()
        self.limits = LimitRegistry()
        self.metrics = FleetMetrics(client, namespace, clock=clock, max_services=MAX_SERVICES)
        self.built: list[weakref.ref] = []

    def limit(self, service: str) -> SharedLimit:
        def build(name: str) -> SharedLimit:
            limit = SharedLimit(
                self.client,
                self.namespace,
                name,
                AIMDOptions(initial=4, min=1, max=8),
                self.clock,
                registry=self.limits,
                idle_evict_seconds=IDLE,
            )
            self.built.append(weakref.ref(limit))
            return limit

        return self.limits.get(service, build)

    def call(self, service: str, hold: bool = False):
        breaker = self.breakers.breaker(service)
        self.built.append(weakref.ref(breaker))
        admission = breaker.admit()
        assert admission.allowed, service
        lease = self.limit(service).try_acquire()
        assert lease is not None, service
        breaker.record(False, 0.001, admission)
        self.metrics.record_delivery("delivered", 0.001, service)
        if hold:
            return lease
        lease.release(False, 0.001)
        return None

    def settle(self, busy: SharedLimit) -> None:
        """What the loops do on their own, now: flush, refresh; then wait for the limit
        loop to have returned every idle slot (all limits but the busy one out of it)."""
        self.breakers.flush()
        self.breakers.refresh()
        wait_for(lambda: self.limits.active() == [busy], 10, what="every idle slot back")

    def alive(self) -> set[int]:
        gc.collect()
        return {id(obj) for obj in (ref() for ref in self.built) if obj is not None}

    def close(self) -> None:
        self.breakers.close()
        self.limits.close()


def threads_since(before: set[threading.Thread]) -> list[str]:
    """The threads started since ``before`` and still running (other tests' may run too)."""
    return sorted(t.name for t in threading.enumerate() if t not in before)


def series_per_family(client, namespace) -> dict[str, set[str]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, namespace))
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        out[family.name] = {s.labels["service"] for s in family.samples if "service" in s.labels}
    return out


def test_hundreds_of_idle_receivers_leave_nothing_behind(redis_client, namespace):
    clock = Clock()
    before = set(threading.enumerate())
    process = Process(redis_client, namespace, clock)
    try:
        busy = webhook_service("busy.example")
        held = process.call(busy, hold=True)  # a call in flight all along
        guards = ["jenga-breaker-flush", "jenga-breaker-listen", "jenga-limit-sync"]
        assert threads_since(before) == guards

        for i in range(HOSTS):
            process.call(webhook_service(f"h{i}.wildcard.example"))
        assert threads_since(before) == guards  # 2 for the breakers, 1 for every limit
        assert len(process.breakers.breakers()) == len(process.limits.limits()) == HOSTS + 1
        assert len(process.alive()) == 2 * (HOSTS + 1)
        families = series_per_family(redis_client, namespace)
        for name in ("jenga_deliveries", "jenga_delivery_duration_seconds"):
            assert len(families[name]) <= MAX_SERVICES + 1, (name, len(families[name]))

        process.settle(process.limit(busy))
        clock.now += IDLE / 2
        process.breakers.breaker(busy).admit()  # the busy breaker is used again meanwhile
        process.settle(process.limit(busy))
        clock.now += IDLE / 2 + 1
        assert len(process.breakers.evict_idle()) == HOSTS
        assert len(process.limits.evict_idle()) == HOSTS
        assert [b.name for b in process.breakers.breakers()] == [busy]
        assert [limit.service for limit in process.limits.limits()] == [busy]
        assert len(process.alive()) == 2  # the busy service's breaker and limit, no other
        assert threads_since(before) == guards

        # Used again: rebuilt from Redis (its breaker was forced open meanwhile).
        again = webhook_service("h7.wildcard.example")
        BreakerStore(redis_client, namespace).force(again, "open", bp.BreakerPolicy())
        assert not process.breakers.breaker(again).admit().allowed
        lease = process.limit(again).try_acquire()
        assert lease is not None
        lease.release(False, 0.001)
        held.release(False, 0.001)
    finally:
        process.close()
