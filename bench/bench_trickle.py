"""Hostile receivers (issue 12): does a healthy endpoint keep its delivery rate
while other receivers trickle their response headers (one byte every 0.2 s)?

The stack is run from the Procfile as in ``bench/bench_blackbox.py`` (release on a
fresh database, web, beat, ops and the deliveries worker: the Procfile's pool and
``WORKER_CONCURRENCY``), with the product's settings except
``DELIVERY_TIMEOUT_SECONDS`` (--deadline, 2 s). One healthy receiver on 127.0.0.1
answers 200 at once; each trickling receiver has its own loopback address
(127.0.0.N), so its own breaker and AIMD limit (``webhook:127.0.0.N``).

Each level runs --seconds: the healthy endpoint is kept saturated (--backlog of its
messages posted and not yet delivered, topped up through the API by 4 client
threads) while each of the level's trickling endpoints gets --trickle-rate messages
a second. Then the trickling endpoints are disabled, their pending messages failed,
and the healthy backlog drained before the next level, whose trickling receivers
are new (fresh breakers). A level with none trickling is a baseline: by default one
runs before and after each trickling level, because other work on the machine moves
the rate by tens of per cent within minutes. A control level (``16p``) has as many
other receivers with the same traffic, answering 200 at once: on a CPU-bound machine
the API, PostgreSQL and the worker spend on the other endpoints' messages whatever
those receivers do, and the control separates that from the cost of the trickle.

Per level: the healthy rate (2xx at the receiver within the window, per second)
and its ratio to the mean of the nearest baselines before and after it; the healthy
messages' latency from POST to 2xx at the receiver (p50/p99) and their attempts'
duration (p99, ``webhook_attempts``); the longest gap between two healthy
deliveries; and what the trickling receivers took: their attempts within the window,
the slot-seconds those held and that as a share of the worker's slots, their
breakers' states and AIMD limits at the window's end.

    .venv/bin/python -m bench.bench_trickle [--levels 0,4,4p,0,16,16p,0,64,64p,0]
        [--seconds 40] [--trickle-rate 0.5] [--backlog 50] [--deadline 2] [--concurrency 64]
        [--broker redis|amqp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import httpx
import psycopg
import redis

from bench.bench_blackbox import BROKER_URLS, other_workers, release, start_worker
from bench.bench_delivery import percentile
from common.config import Settings
from common.redis.keys import RedisKeys
from tests.support.brokers import Broker
from tests.support.hostile import HEADERS_TRICKLED, HostileReceiver, answer
from tests.support.receiver import WebhookReceiver
from tests.support.servers import base_database_url, base_redis_url, wait_for
from tests.support.stack import AUTH, create_endpoint, stack_env, start_api, start_beat

CLIENT_THREADS = 4
# A control level's receivers: the same traffic as a trickling level, answered at once.
PROMPT = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close", b"ok")
# The product's delivery defaults: stack_env's are the tests' (a 200 ms schedule).
PRODUCT = {
    name.upper(): str(Settings.model_fields[name].default)
    for name in (
        "delivery_retry_schedule",
        "delivery_retry_jitter",
        "delivery_dispatch_interval_seconds",
    )
}


# --- the stack, from the Procfile ----------------------------------------------------------


@dataclass
class Stack:
    client: httpx.Client
    database_url: str
    env: dict[str, str]


@contextmanager
def procfile_stack(broker: str, prefix: str, **settings: str) -> Iterator[Stack]:
    """The Procfile's processes on a fresh database and a namespace of their own
    (``settings`` on top of the product's defaults); all of it dropped at the end."""
    namespace = f"{prefix}{uuid.uuid4().hex[:8]}"
    base = base_database_url()
    database = f"jenga_{namespace}"
    database_url = f"{base.rpartition('/')[0]}/{database}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    broker_env = {
        "REDIS_URL": base_redis_url(),
        "BROKER_URL": BROKER_URLS[broker],
        "JENGA_NAMESPACE": namespace,
        "CONFIG_WAIT_SECONDS": "0",
    }
    env = stack_env(
        broker_env,
        database_url,
        **{
            **PRODUCT,
            # Every Procfile worker here is celery@<host>: keep its heartbeat file out of
            # others' way.
            "HEARTBEAT_DIR": tempfile.mkdtemp(prefix=f"jenga-{namespace}-"),
            **settings,
        },
    )
    try:
        release(env)
        with ExitStack() as stack:
            client = start_api(stack, env)
            start_beat(stack, env)
            for role in other_workers():
                start_worker(stack, env, role)
            start_worker(stack, env)
            yield Stack(client, database_url, env)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        Broker(broker, BROKER_URLS[broker] if broker == "amqp" else None).delete_queues(namespace)
        for url in {broker_env["REDIS_URL"], BROKER_URLS["redis"]}:
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=RedisKeys(namespace).key("*")):
                client.delete(key)


def post_message(
    client: httpx.Client, endpoint_id: str, event_type: str, payload: dict
) -> str | None:
    """POST one message through the API; its id, or None if it was not accepted."""
    response = client.post(
        "/v1/messages",
        headers=AUTH,
        json={"endpoint_id": endpoint_id, "event_type": event_type, "payload": payload},
    )
    return response.json()["id"] if response.status_code == 202 else None


# --- the healthy endpoint ------------------------------------------------------------------


@dataclass
class Healthy:
    """The healthy endpoint's messages: when each was posted and first answered 2xx;
    ``slots`` keeps at most ``backlog`` of them posted and not yet delivered."""

    backlog: int
    posted: dict[str, float] = field(default_factory=dict)  # id -> monotonic time of the POST
    delivered: dict[str, float] = field(default_factory=dict)  # id -> first 2xx at the receiver
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.slots = threading.Semaphore(self.backlog)

    def respond(self, received) -> int:
        with self.lock:
            first = received.webhook_id not in self.delivered
            if first:
                self.delivered[received.webhook_id] = time.monotonic()
        if first:
            self.slots.release()
        return 200

    def feed(self, client: httpx.Client, endpoint_id: str, stop: threading.Event) -> None:
        """Post healthy messages for as long as ``stop`` is clear, ``backlog`` at most owed."""
        while not stop.is_set():
            if not self.slots.acquire(timeout=0.1):
                continue
            sent = time.monotonic()
            message_id = post_message(client, endpoint_id, "bench.healthy", {"healthy": True})
            if message_id is None:
                self.slots.release()
                continue
            with self.lock:
                self.posted[message_id] = sent

    def owed(self) -> int:
        with self.lock:
            return len(self.posted.keys() - self.delivered.keys())


def feed_trickling(
    client: httpx.Client, endpoint_ids: list[str], rate: float, stop: threading.Event
) -> None:
    """``rate`` messages a second to each endpoint, round robin, on a fixed schedule."""
    interval = 1 / (rate * len(endpoint_ids))
    due = time.monotonic()
    n = 0
    while not stop.is_set():
        post_message(client, endpoint_ids[n % len(endpoint_ids)], "bench.trickle", {"n": n})
        n += 1
        due += interval
        stop.wait(max(0.0, due - time.monotonic()))


# --- one level -----------------------------------------------------------------------------


@dataclass
class Level:
    trickling: int  # the level's other receivers (trickling, or prompt when ``control``)
    seconds: float
    healthy_delivered: int
    latencies: list[float]  # POST to 2xx at the receiver, seconds, messages posted in the window
    attempt_ms: list[int]  # the healthy attempts' durations within the window
    longest_gap: float  # seconds between two healthy deliveries within the window
    trickle_attempts: int
    trickle_slot_seconds: float
    trickle_hosts_attempts: list[int]  # attempts per trickling endpoint within the window
    timeline: list[tuple[int, int]]  # per 5 s: healthy deliveries, trickling attempts started
    mean_owed: float = 0.0  # healthy messages posted and not yet delivered, sampled
    breakers: Counter = field(default_factory=Counter)  # the trickling hosts', at the window's end
    limits: list[int] = field(default_factory=list)  # their AIMD limits then
    control: bool = False  # the other receivers answer at once: the traffic without the trickle

    @property
    def rate(self) -> float:
        return self.healthy_delivered / self.seconds


def run_level(
    stack: Stack,
    receiver: WebhookReceiver,
    healthy_endpoint: str,
    trickling: int,
    first_host: int,
    args: argparse.Namespace,
    control: bool = False,
) -> Level:
    healthy = Healthy(args.backlog)
    receiver.respond = healthy.respond
    client = stack.client
    with ExitStack() as receivers:
        hostile = [
            receivers.enter_context(
                HostileReceiver(PROMPT if control else HEADERS_TRICKLED, host=f"127.0.0.{n}")
            )
            for n in range(first_host, first_host + trickling)
        ]
        trickle_ids = []
        for receiver_ in hostile:
            response = client.post("/v1/endpoints", json={"url": receiver_.url()}, headers=AUTH)
            response.raise_for_status()
            trickle_ids.append(response.json()["id"])
        stop = threading.Event()
        threads = [
            threading.Thread(target=healthy.feed, args=(client, healthy_endpoint, stop))
            for _ in range(CLIENT_THREADS)
        ]
        if trickle_ids:
            threads.append(
                threading.Thread(
                    target=feed_trickling, args=(client, trickle_ids, args.trickle_rate, stop)
                )
            )
        started, started_wall = time.monotonic(), time.time()
        for thread in threads:
            thread.start()
        owed = []  # sampled: near --backlog means the worker, not the posting, sets the pace
        while time.monotonic() < started + args.seconds:
            time.sleep(0.5)
            owed.append(healthy.owed())
        # The trickling hosts' breakers and limits as the window ends.
        guards = client.get("/breakers", headers=AUTH).json()
        stop.set()
        ended, ended_wall = time.monotonic(), time.time()
        for thread in threads:
            thread.join()
        stop_trickling(stack, trickle_ids)
        wait_for(lambda: healthy.owed() == 0, 300, interval=0.2, what="the healthy backlog")
        time.sleep(args.deadline + 1)  # the last trickling attempts reach their deadline
    level = tally(
        stack, healthy, healthy_endpoint, trickle_ids, (started, ended), (started_wall, ended_wall)
    )
    level.mean_owed = statistics.mean(owed)
    level.control = control
    services = {f"webhook:{receiver_.host}" for receiver_ in hostile}
    level.breakers = Counter(b["state"] for b in guards["breakers"] if b["name"] in services)
    if trickling > sum(level.breakers.values()):
        level.breakers["never called"] = trickling - sum(level.breakers.values())
    level.limits = [lim["limit"] for lim in guards["limits"] if lim["service"] in services]
    return level


def stop_trickling(stack: Stack, endpoint_ids: list[str]) -> None:
    """Disable the level's trickling endpoints and fail their pending messages, so
    that the next level starts without them (a claimed one ends at its deadline)."""
    for endpoint_id in endpoint_ids:
        stack.client.post(f"/v1/endpoints/{endpoint_id}/disable", headers=AUTH).raise_for_status()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,"
            " last_error = 'bench: level over'"
            " WHERE endpoint_id = ANY(%s) AND status = 'pending'"
            " AND (claimed_until IS NULL OR claimed_until < now())",
            (endpoint_ids,),
        )


def tally(
    stack: Stack,
    healthy: Healthy,
    healthy_endpoint: str,
    trickle_ids: list[str],
    window: tuple[float, float],
    wall: tuple[float, float],
) -> Level:
    started, ended = window
    seconds = ended - started
    with healthy.lock:
        posted, delivered = dict(healthy.posted), dict(healthy.delivered)
    in_window = sorted(at for at in delivered.values() if started <= at <= ended)
    gaps = [b - a for a, b in zip([started, *in_window], [*in_window, ended], strict=True)]
    latencies = [delivered[i] - at for i, at in posted.items() if i in delivered]
    with psycopg.connect(stack.database_url) as conn:
        attempts = conn.execute(
            "SELECT d.endpoint_id, extract(epoch FROM a.started_at), a.duration_ms"
            " FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
            " WHERE d.endpoint_id = ANY(%s)"
            " AND a.started_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
            ([healthy_endpoint, *trickle_ids], *wall),
        ).fetchall()
    healthy_ms = [ms for endpoint, _, ms in attempts if endpoint == healthy_endpoint]
    trickled = [(e, float(at), ms) for e, at, ms in attempts if e in trickle_ids]
    per_host = {endpoint: 0 for endpoint in trickle_ids}
    for endpoint, _, _ in trickled:
        per_host[endpoint] += 1
    buckets = int(seconds // 5) + 1
    timeline = [[0, 0] for _ in range(buckets)]
    for at in in_window:
        timeline[min(buckets - 1, int((at - started) // 5))][0] += 1
    for _, at, _ in trickled:
        timeline[min(buckets - 1, int((at - wall[0]) // 5))][1] += 1
    return Level(
        trickling=len(trickle_ids),
        seconds=seconds,
        healthy_delivered=len(in_window),
        latencies=latencies,
        attempt_ms=healthy_ms,
        longest_gap=max(gaps),
        trickle_attempts=len(trickled),
        trickle_slot_seconds=sum(ms for _, _, ms in trickled) / 1000,
        trickle_hosts_attempts=sorted(per_host.values()),
        timeline=[tuple(bucket) for bucket in timeline],
    )


# --- report ----------------------------------------------------------------------------------


def neighbours(levels: list[Level], at: int) -> float:
    """The mean rate of the nearest baselines before and after ``levels[at]``."""
    before = [x.rate for x in levels[: at + 1] if not x.trickling][-1:]
    after = [x.rate for x in levels[at:] if not x.trickling][:1]
    return statistics.mean(before + after or [levels[at].rate])


def control_rate(levels: list[Level], at: int) -> float | None:
    """The rate of the control level nearest ``levels[at]`` with as many prompt receivers."""
    controls = [
        (abs(i - at), x.rate)
        for i, x in enumerate(levels)
        if x.control and x.trickling == levels[at].trickling
    ]
    return min(controls)[1] if controls else None


def report(levels: list[Level], args: argparse.Namespace) -> None:
    slots = args.concurrency
    print(
        f"\nmachine: {os.cpu_count()} cores; worker: Procfile, WORKER_CONCURRENCY="
        f"{slots}; DELIVERY_TIMEOUT_SECONDS={args.deadline:g}; {args.seconds:g} s per level;"
        f" healthy backlog {args.backlog}; {args.trickle_rate:g} msg/s per trickling endpoint;"
        f" broker {args.broker}"
    )
    print(
        "| trickling receivers | healthy rate (/s) | ÷ baseline | ÷ control |"
        " POST → 2xx p50 / p99 |"
        " attempt p99 | longest gap | trickling attempts (per receiver) |"
        " slot-s held (share of slots) | breakers at the end | AIMD limits |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for at, level in enumerate(levels):
        hosts = level.trickle_hosts_attempts
        spread = f" ({min(hosts)}–{max(hosts)})" if hosts else ""
        share = level.trickle_slot_seconds / (level.seconds * slots)
        label = f"{level.trickling} (baseline)" if not level.trickling else str(level.trickling)
        label = f"{level.trickling} prompt (control)" if level.control else label
        ratio = f"{level.rate / neighbours(levels, at):.2f}×" if level.trickling else "—"
        control = control_rate(levels, at) if level.trickling and not level.control else None
        versus = f"{level.rate / control:.2f}×" if control else "—"
        print(
            f"| {label} | {level.rate:.1f} | {ratio} | {versus} |"
            f" {percentile(level.latencies, 0.5) * 1000:.0f} ms /"
            f" {percentile(level.latencies, 0.99) * 1000:.0f} ms |"
            f" {percentile(level.attempt_ms, 0.99)} ms | {level.longest_gap:.2f} s |"
            f" {level.trickle_attempts}{spread} |"
            f" {level.trickle_slot_seconds:.0f} ({share:.0%}) |"
            f" {', '.join(f'{n} {state}' for state, n in sorted(level.breakers.items())) or '—'} |"
            f" {f'{min(level.limits)}–{max(level.limits)}' if level.limits else '—'} |"
        )
    for level in levels:
        print(
            f"{level.trickling}{' prompt' if level.control else ' trickling'}: healthy owed"
            f" {level.mean_owed:.0f} on average;"
            " per 5 s, healthy delivered / trickling attempts started: "
            + ", ".join(f"{h}/{t}" for h, t in level.timeline)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--levels",
        default="0,4,4p,0,16,16p,0,64,64p,0",
        help="other receivers per level: N trickling, Np prompt (a control level)",
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each level")
    parser.add_argument("--trickle-rate", type=float, default=0.5, help="msg/s per receiver")
    parser.add_argument("--backlog", type=int, default=50, help="healthy messages kept owed")
    parser.add_argument("--deadline", type=float, default=2.0, help="DELIVERY_TIMEOUT_SECONDS")
    parser.add_argument("--concurrency", type=int, default=64, help="WORKER_CONCURRENCY")
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    args = parser.parse_args()
    specs = [(int(n.rstrip("p")), n.endswith("p")) for n in args.levels.split(",")]
    counts = [n for n, _ in specs]
    if 2 + sum(counts) > 254:
        raise SystemExit("--levels: at most 252 trickling receivers in all (127.0.0.2-254)")
    settings = {
        "DELIVERY_TIMEOUT_SECONDS": str(args.deadline),
        "WORKER_CONCURRENCY": str(args.concurrency),
    }
    levels = []
    with procfile_stack(args.broker, "tr", **settings) as stack, WebhookReceiver() as receiver:
        healthy_endpoint = create_endpoint(stack.client, receiver)["id"]
        first_host = 2
        for trickling, control in specs:
            level = run_level(
                stack, receiver, healthy_endpoint, trickling, first_host, args, control
            )
            first_host += trickling
            levels.append(level)
            print(
                f"{trickling}{' prompt' if control else ''}: healthy {level.rate:.1f}/s,"
                f" {level.trickle_attempts} trickling attempts",
                flush=True,
            )
    report(levels, args)


if __name__ == "__main__":
    main()
