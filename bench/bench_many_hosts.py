"""Many hosts (issue 12): what guarded calls to 10,000 distinct receivers leave in a
worker process and in Redis, once they are made and once they have gone idle.

One process plays a worker: a started ``BreakerRegistry`` (flush and pub/sub
threads), a ``LimitRegistry`` (one sync thread) and a ``FleetMetrics`` recorder, as
``GuardedTask`` and the delivery task use them. For each of ``--hosts`` receivers
(``webhook:h<i>.wildcard.example``) it makes one guarded call to a local no-op:
breaker admission, a limit slot, the outcome recorded, one delivery counted. Then
the loops settle (outcomes flushed, idle slots returned), the clock (injected) moves
past ``GUARD_IDLE_EVICT_SECONDS`` and the eviction step runs. Measured at each stage
against the baseline before the first call: the process's threads, its RSS, the
breaker and limit objects it holds, Redis ``used_memory`` and the namespace's keys,
and the series of ``/metrics``'s fleet families. ``--old-design`` also starts, in a
child process, one idle thread per limit as each ``SharedLimit`` did before, to show
what that cost; ``--waves 2`` calls a second set of new receivers after the first
went idle (does the process grow again?).

Run from the repository root (needs Redis; ``REDIS_URL`` or 127.0.0.1:6379):

    .venv/bin/python -m bench.bench_many_hosts [--hosts 10000] [--max-services 50] [--waves 1]
        [--old-design]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import resource
import threading
import time
import uuid

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.registry import LimitRegistry
from common.guards.limit.shared import SharedLimit
from common.guards.names import webhook_service
from common.health.fleet_metrics import FleetCollector, FleetMetrics

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
IDLE_EVICT_SECONDS = 600.0  # GUARD_IDLE_EVICT_SECONDS's default


class Clock:
    """Wall-clock time plus a jump, so that eviction needs no ten-minute wait."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def namespace_keys(client: redis.Redis, namespace: str) -> tuple[int, dict[str, float]]:
    """The namespace's keys and what each family of them takes (``MEMORY USAGE``, MiB,
    by the key's second part: ``breaker``, ``limit``, ``metrics``…): the Redis is
    shared, so ``used_memory`` moves with other work too."""
    keys = list(client.scan_iter(f"*{namespace}*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key)
    families: dict[str, float] = {}
    for key, size in zip(keys, pipe.execute(), strict=True):
        family = key.split(":")[1]
        families[family] = families.get(family, 0.0) + (size or 0) / 2**20
    return len(keys), families


def series_counts(client: redis.Redis, namespace: str) -> dict[str, int]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, namespace))
    counts = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        services = {s.labels["service"] for s in family.samples if "service" in s.labels}
        if services:
            counts[family.name] = len(services)
    return counts


class Worker:
    def __init__(self, client: redis.Redis, namespace: str, max_services: int):
        self.client, self.namespace, self.clock = client, namespace, Clock()
        self.breakers = BreakerRegistry(
            client,
            namespace,
            bp.BreakerPolicy(),
            clock=self.clock,
            idle_evict_seconds=IDLE_EVICT_SECONDS,
        ).start()
        self.limits = LimitRegistry()
        self.metrics = FleetMetrics(client, namespace, clock=self.clock, max_services=max_services)

    def build(self, service: str) -> SharedLimit:
        return SharedLimit(
            self.client,
            self.namespace,
            service,
            AIMDOptions(),
            self.clock,
            registry=self.limits,
            idle_evict_seconds=IDLE_EVICT_SECONDS,
        )

    def call(self, service: str) -> None:
        breaker = self.breakers.breaker(service)
        admission = breaker.admit()
        lease = self.limits.get(service, self.build).try_acquire()
        started = time.perf_counter()
        failed = False  # the call itself: a local no-op
        latency = time.perf_counter() - started
        if admission.allowed:
            breaker.record(failed, latency, admission)
        if lease is not None:
            lease.release(failed, latency)
        self.metrics.record_delivery("delivered", latency, service)

    def settle(self, timeout: float = 120.0) -> None:
        """Outcomes flushed, states refreshed, every idle slot returned by the loop."""
        self.breakers.flush()
        self.breakers.refresh()
        deadline = time.monotonic() + timeout
        while self.limits.active() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.breakers.close()
        self.limits.close()


def measure(worker: Worker, label: str, started: float | None = None) -> dict:
    gc.collect()
    info = worker.client.info("memory")
    keys, key_families = namespace_keys(worker.client, worker.namespace)
    return {
        "stage": label,
        "threads": threading.active_count(),
        "rss_mib": rss_mib(),
        "breakers": len(worker.breakers.breakers()),
        "limits": len(worker.limits.limits()),
        "limits_in_loop": len(worker.limits.active()),
        "redis_used_mib": info["used_memory"] / 2**20,
        "objects": len(gc.get_objects()),
        "keys": keys,
        "key_mib": sum(key_families.values()),
        "key_families": key_families,
        "series": series_counts(worker.client, worker.namespace),
        "seconds": None if started is None else time.perf_counter() - started,
    }


def thread_per_limit(hosts: int, results) -> None:
    """The design before: one sync thread per SharedLimit, each waking every 0.1 s."""
    base_rss, base_cpu = rss_mib(), time.process_time()
    stop = threading.Event()

    def sync_loop() -> None:
        while not stop.wait(0.1):
            pass

    threads = [threading.Thread(target=sync_loop, daemon=True) for _ in range(hosts)]
    for thread in threads:
        thread.start()
    cpu_before, wall_before = time.process_time(), time.monotonic()
    time.sleep(2.0)
    cpu = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
    results.put(
        {
            "threads": threading.active_count(),
            "rss_mib": rss_mib() - base_rss,
            "cpu_share": cpu,
            "start_cpu_s": cpu_before - base_cpu,
        }
    )
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--max-services", type=int, default=50)
    parser.add_argument("--waves", type=int, default=1, help="rounds of new receivers")
    parser.add_argument("--old-design", action="store_true")
    args = parser.parse_args()

    namespace = f"bench-hosts-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    worker = Worker(client, namespace, args.max_services)
    rows = []
    try:
        worker.call(webhook_service("first.example"))  # the loops' threads start here
        worker.settle()
        rows.append(measure(worker, "baseline: one receiver called"))
        for wave in range(1, args.waves + 1):
            started = time.perf_counter()
            for i in range(args.hosts):
                worker.call(webhook_service(f"h{i}.w{wave}.wildcard.example"))
            rows.append(measure(worker, f"wave {wave}: {args.hosts} receivers called", started))
            started = time.perf_counter()
            worker.settle()
            rows.append(measure(worker, f"wave {wave}: loops settled", started))
            worker.clock.offset += IDLE_EVICT_SECONDS + 1
            started = time.perf_counter()
            evicted = (len(worker.breakers.evict_idle()), len(worker.limits.evict_idle()))
            label = f"wave {wave}: idle, evicted {evicted[0]} + {evicted[1]}"
            rows.append(measure(worker, label, started))
    finally:
        worker.close()
        keys = list(client.scan_iter(f"*{namespace}*", count=1000))
        for at in range(0, len(keys), 1000):
            client.delete(*keys[at : at + 1000])

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"# {args.hosts} receivers, METRICS_MAX_SERVICES={args.max_services}, "
        f"{os.cpu_count()} cores; process CPU {cpu.ru_utime + cpu.ru_stime:.1f} s\n"
    )
    print(
        "| stage | threads | RSS (MiB) | Python objects | breakers held | limits held (in the"
        " loop) | Redis used_memory (MiB) | namespace keys (MiB) | fleet series per family"
        " | took (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        series = ", ".join(f"{n}" for n in sorted(set(row["series"].values()))) or "0"
        took = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        print(
            f"| {row['stage']} | {row['threads']} | {row['rss_mib']:.1f} | {row['objects']} "
            f"| {row['breakers']} | {row['limits']} ({row['limits_in_loop']}) "
            f"| {row['redis_used_mib']:.1f} | {row['keys']} ({row['key_mib']:.1f}) | {series} "
            f"| {took} |"
        )
    families = rows[-1]["key_families"]
    print(
        "\nNamespace keys by family after eviction (MiB): "
        + ", ".join(f"{name} {mib:.2f}" for name, mib in sorted(families.items()))
    )
    if args.old_design:
        results: mp.Queue = mp.Queue()
        child = mp.get_context("fork").Process(target=thread_per_limit, args=(args.hosts, results))
        child.start()
        old = results.get(timeout=300)
        child.join(60)
        print(
            f"\nBefore (one sync thread per limit, {args.hosts} idle limits): "
            f"{old['threads']} threads, +{old['rss_mib']:.1f} MiB RSS, "
            f"{old['cpu_share'] * 100:.0f} % of a core while idle"
        )


if __name__ == "__main__":
    main()
