"""A dead host's backlog (issue 12): do 50,000 pending messages for a host whose
breaker is open delay a healthy endpoint's retries beyond their schedule?

The stack is run from the Procfile (``bench.bench_trickle.procfile_stack``: release
on a fresh database, web, beat, ops and the deliveries worker: the Procfile's pool and
``WORKER_CONCURRENCY``). The healthy endpoint (127.0.0.1) answers each
message's first attempt 503 and its retry 200; its messages are posted through the
API at --rate a second. The dead host (127.0.0.2) refuses connections (--dead
refuse) or answers every request 503 (--dead 503).

* Baseline: healthy messages for --baseline-seconds, no dead backlog.
* Backlog: --backlog messages for the dead host inserted straight into PostgreSQL
  (pending, due now, in one statement: through the API they would take minutes of
  the same cores), then healthy messages for --seconds as before.

Each phase then waits (at most --drain seconds) for its healthy messages' retries.
Per phase: how late each healthy message's second attempt started against its
scheduled time (its first attempt's end plus the schedule's first delay; the jitter
is 0 so that time is known), p50/p99/max, and per 30 s of the backlog phase; the
first attempt's delay after the POST; the healthy endpoint's breaker trips;
PostgreSQL's deadlocks (``pg_stat_database``); the deliveries queue's depth (sampled
every second). For the dead host, from the worker's task events: deliver tasks run
for its messages per minute, by what each returned, and how long the ones that
parked the backlog ran.

Settings are the product's, except: ``DELIVERY_RETRY_JITTER=0`` (above);
``BREAKER_FAILURE_RATE=0`` and ``BREAKER_FAILURE_THRESHOLD=100``, because the healthy
endpoint fails half its calls by design (every first attempt, and only first attempts
in a phase's first 5 s) and must not trip its own breaker while its retries run on
time, while the dead host still trips after 100 quick refusals;
``LIMIT_MIN=LIMIT_INITIAL=50`` so the healthy host's AIMD limit (every 503 is a drop)
never refuses.

    .venv/bin/python -m bench.bench_parking [--backlog 50000] [--seconds 120]
        [--baseline-seconds 60] [--rate 5] [--drain 240] [--dead refuse|503]
        [--concurrency 64] [--broker redis|amqp]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg
from celery import Celery

from bench.bench_delivery import percentile
from bench.bench_trickle import Stack, post_message, procfile_stack
from common.broker import queue_names
from common.config import Settings, load_settings
from tests.support.brokers import waiting
from tests.support.hostile import HostileReceiver, answer
from tests.support.receiver import WebhookReceiver
from tests.support.servers import free_port, wait_for
from tests.support.stack import AUTH, create_endpoint
from worker.celeryconfig import celery_config

HEALTHY_HOST = "127.0.0.1"
DEAD_HOST = "127.0.0.2"
DEAD_PREFIX = "dlv_dead_"  # the backlog's delivery ids: a task's argument says whose it is
MESSAGE_ID = re.compile(r"'(msg_[0-9a-z_]+)'")


# --- the healthy endpoint ------------------------------------------------------------------


@dataclass
class FirstAttemptFails:
    """Answers each webhook-id's first POST 503 and any later one 200."""

    seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, received) -> int:
        with self.lock:
            first = received.webhook_id not in self.seen
            self.seen.add(received.webhook_id)
        return 503 if first else 200


def post_healthy(stack: Stack, endpoint_id: str, rate: float, seconds: float) -> list[str]:
    """``rate`` messages a second for ``seconds``, on a fixed schedule; their ids."""
    ids = []
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        message_id = post_message(stack.client, endpoint_id, "bench.parking", {"n": n})
        if message_id:
            ids.append(message_id)
    return ids


def settle(stack: Stack, ids: list[str], seconds: float) -> bool:
    """Wait (at most ``seconds``) until every message of ``ids`` is delivered."""

    def delivered() -> bool:
        with psycopg.connect(stack.database_url) as conn:
            (owed,) = conn.execute(
                "SELECT count(*) FROM webhook_deliveries"
                " WHERE message_id = ANY(%s) AND status <> 'delivered'",
                (ids,),
            ).fetchone()
        return owed == 0

    try:
        wait_for(delivered, seconds, interval=1, what="the healthy messages delivered")
        return True
    except AssertionError:
        return False


@dataclass
class Retries:
    # (when the first attempt started, seconds between the scheduled retry and the second
    # attempt), one per message that had a second attempt
    second_late: list[tuple[float, float]]
    first_after_post: list[float]  # seconds between the message's creation and its 1st attempt
    unretried: int  # messages without a second attempt when the phase was tallied

    @property
    def late(self) -> list[float]:
        return [late for _, late in self.second_late]


def retries(stack: Stack, ids: list[str], delay: float) -> Retries:
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT d.message_id, extract(epoch FROM d.created_at), a.number,"
            " extract(epoch FROM a.started_at), a.duration_ms"
            " FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id"
            " WHERE d.message_id = ANY(%s) AND a.number <= 2",
            (ids,),
        ).fetchall()
    created: dict[str, float] = {}
    attempts: dict[tuple[str, int], tuple[float, int]] = {}
    for message_id, created_at, number, started_at, duration_ms in rows:
        created[message_id] = float(created_at)
        attempts[message_id, number] = (float(started_at), duration_ms)
    late, first = [], []
    for message_id in created:
        started, duration_ms = attempts[message_id, 1]
        first.append(started - created[message_id])
        if (message_id, 2) in attempts:
            scheduled = started + duration_ms / 1000 + delay
            late.append((started, attempts[message_id, 2][0] - scheduled))
    return Retries(sorted(late), first, len(ids) - len(late))


# --- the dead host -------------------------------------------------------------------------


def insert_backlog(stack: Stack, endpoint_id: str, count: int) -> float:
    """``count`` pending messages for ``endpoint_id``, due now, never dispatched, in one
    statement; seconds it took (ANALYZE included, as autovacuum would soon do)."""
    started = time.monotonic()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            """WITH messages AS (
                   INSERT INTO webhook_messages
                       (id, app_id, endpoint_id, event_type, payload, body, request_hash,
                        created_at)
                   SELECT 'msg_dead_' || n, e.app_id, e.id, 'bench.dead',
                          jsonb_build_object('n', n),
                          '{"type":"bench.dead","timestamp":"' || now() || '","data":{"n":'
                              || n || '}}',
                          'bench', now()
                   FROM webhook_endpoints e, generate_series(1, %(count)s) AS n
                   WHERE e.id = %(endpoint)s
                   RETURNING id, endpoint_id)
               INSERT INTO webhook_deliveries
                   (id, message_id, endpoint_id, status, created_at, next_attempt_at)
               SELECT %(prefix)s || substr(id, 10), id, endpoint_id, 'pending', now(), now()
               FROM messages""",
            {"prefix": DEAD_PREFIX, "endpoint": endpoint_id, "count": count},
        )
        conn.execute("ANALYZE webhook_messages")
        conn.execute("ANALYZE webhook_deliveries")
    return time.monotonic() - started


class TaskEvents:
    """The deliver tasks the worker ran, from its task events: when each was received,
    for which message, what it returned (``'deferred'``: parked; ``None``: its message
    was not due or someone else's; ``'pending'``: an attempt, retry scheduled) and how
    long it ran."""

    def __init__(self, settings: Settings):
        self.app = Celery("bench_parking_events", set_as_current=False)
        self.app.conf.update(celery_config(settings))
        self.received: dict[str, tuple[float, str]] = {}  # task id -> (timestamp, message id)
        self.results: dict[str, tuple[str, float]] = {}  # task id -> (result's repr, runtime)
        self._receiver = None
        self._thread = threading.Thread(target=self._capture, daemon=True, name="task-events")

    def _capture(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(
                conn,
                handlers={
                    "task-received": self._on_received,
                    "task-succeeded": self._on_succeeded,
                    "task-failed": self._on_failed,
                    "task-retried": self._on_retried,
                },
            )
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_received(self, event: dict) -> None:
        found = MESSAGE_ID.search(str(event.get("args", "")))
        if found:
            self.received[event["uuid"]] = (event["timestamp"], found.group(1))

    def _on_succeeded(self, event: dict) -> None:
        self.results[event["uuid"]] = (str(event.get("result")), event.get("runtime") or 0.0)

    def _on_failed(self, event: dict) -> None:
        self.results[event["uuid"]] = ("raised", 0.0)

    def _on_retried(self, event: dict) -> None:
        # autoretry_for=DB_ERRORS: the statement failed (a deadlock, PostgreSQL away)
        self.results[event["uuid"]] = ("retried (database error)", 0.0)

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        wait_for(lambda: self._receiver is not None, 30, what="the task event receiver")
        return self

    def __exit__(self, *exc) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)

    def dead_tasks(self, since: float) -> list[tuple[float, str, float]]:
        """(seconds after ``since``, result, runtime) of every task received for a dead-host
        message."""
        return sorted(
            (at - since, *self.results.get(task_id, ("unknown", 0.0)))
            for task_id, (at, message_id) in list(self.received.items())
            if message_id.startswith(DEAD_PREFIX) and at >= since
        )


class QueueDepth:
    """The deliveries queue's ready tasks, sampled every ``every`` seconds."""

    def __init__(self, settings: Settings, every: float = 1.0):
        config = celery_config(settings)
        self.broker_url = config["broker_url"]
        self.options = config["broker_transport_options"]
        self.queue = queue_names(settings.jenga_namespace)["deliveries"]
        self.every = every
        self.samples: list[tuple[float, int]] = []  # (time.time(), ready tasks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="queue-depth")

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # an empty Redis queue is no key at all
                self.samples.append(
                    (time.time(), waiting(self.broker_url, self.queue, self.options))
                )

    def __enter__(self) -> QueueDepth:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def max_between(self, start: float, end: float) -> int:
        return max((n for at, n in self.samples if start <= at <= end), default=0)


def deadlocks(stack: Stack) -> int:
    """Deadlocks PostgreSQL has detected in the run's database so far."""
    with psycopg.connect(stack.database_url) as conn:
        (count,) = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return count


def trips(stack: Stack, host: str) -> int:
    """How often ``host``'s breaker has opened."""
    breakers = stack.client.get("/breakers", headers=AUTH).json()["breakers"]
    return next((b["total_trips"] for b in breakers if b["name"] == f"webhook:{host}"), 0)


# --- one run -------------------------------------------------------------------------------


@dataclass
class Phase:
    retries: Retries
    started: float  # time.time() at the phase's start
    delivered_all: bool  # every healthy message delivered within --drain
    deadlocks: int  # detected by PostgreSQL during the phase
    healthy_trips: int  # the healthy endpoint's breaker opened, during the phase
    queue_max: int  # most deliver tasks waiting in the queue


@dataclass
class Result:
    baseline: Phase
    backlog: Phase
    insert_seconds: float
    dead_tasks: list[tuple[float, str, float]]  # (seconds after the insert, result, runtime)
    dead_attempts: int  # attempts recorded for the dead host's messages
    dead_pending: int  # of the backlog, still pending at the end
    dead_trips: int  # times the dead host's breaker opened
    run_seconds: float  # from the insert to the end of the backlog phase


def run_phase(
    stack: Stack, healthy_endpoint: str, seconds: float, depth: QueueDepth, args, delay: float
) -> Phase:
    started = time.time()
    deadlocks_before, trips_before = deadlocks(stack), trips(stack, HEALTHY_HOST)
    ids = post_healthy(stack, healthy_endpoint, args.rate, seconds)
    delivered_all = settle(stack, ids, args.drain)
    return Phase(
        retries(stack, ids, delay),
        started,
        delivered_all,
        deadlocks(stack) - deadlocks_before,
        trips(stack, HEALTHY_HOST) - trips_before,
        depth.max_between(started, time.time()),
    )


def run(args: argparse.Namespace) -> Result:
    settings = {
        "WORKER_CONCURRENCY": str(args.concurrency),
        "DELIVERY_RETRY_JITTER": "0",
        "BREAKER_FAILURE_RATE": "0",
        "BREAKER_FAILURE_THRESHOLD": "100",
        "LIMIT_MIN": "50",
        "LIMIT_INITIAL": "50",
    }
    with ExitStack() as stack_:
        stack = stack_.enter_context(procfile_stack(args.broker, "pk", **settings))
        loaded = load_settings(stack.env, wait_seconds=0)
        delay = loaded.delivery_retry_delays[0]
        healthy = stack_.enter_context(WebhookReceiver())
        healthy.respond = FirstAttemptFails().respond
        healthy_endpoint = create_endpoint(stack.client, healthy)["id"]
        if args.dead == "503":
            busy = answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0")
            dead_url = stack_.enter_context(HostileReceiver(busy, host=DEAD_HOST)).url()
        else:
            dead_url = f"http://{DEAD_HOST}:{free_port()}/hook"  # nothing listens there
        response = stack.client.post("/v1/endpoints", json={"url": dead_url}, headers=AUTH)
        response.raise_for_status()
        dead_endpoint = response.json()["id"]
        events = stack_.enter_context(TaskEvents(loaded))
        depth = stack_.enter_context(QueueDepth(loaded))

        baseline = run_phase(stack, healthy_endpoint, args.baseline_seconds, depth, args, delay)
        print(f"baseline: {len(baseline.retries.first_after_post)} healthy messages", flush=True)

        insert_seconds = insert_backlog(stack, dead_endpoint, args.backlog)
        inserted = time.time()
        print(f"backlog: {args.backlog} messages inserted in {insert_seconds:.1f} s", flush=True)
        backlog = run_phase(stack, healthy_endpoint, args.seconds, depth, args, delay)
        run_seconds = time.time() - inserted
        with psycopg.connect(stack.database_url) as conn:
            (dead_attempts,) = conn.execute(
                "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
                " ON d.id = a.delivery_id WHERE d.endpoint_id = %s",
                (dead_endpoint,),
            ).fetchone()
            (dead_pending,) = conn.execute(
                "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = %s"
                " AND status = 'pending'",
                (dead_endpoint,),
            ).fetchone()
        return Result(
            baseline,
            backlog,
            insert_seconds,
            events.dead_tasks(inserted - insert_seconds),
            dead_attempts,
            dead_pending,
            trips(stack, DEAD_HOST),
            run_seconds,
        )


# --- report ----------------------------------------------------------------------------------


def describe(values: list[float]) -> str:
    if not values:
        return "—"
    return (
        f"{percentile(values, 0.5):.2f} s / {percentile(values, 0.99):.2f} s / {max(values):.2f} s"
    )


ROWS = [
    ("messages", lambda p: len(p.retries.first_after_post)),
    ("2nd attempt after its scheduled time, p50 / p99 / max", lambda p: describe(p.retries.late)),
    ("1st attempt after the POST, p50 / p99 / max", lambda p: describe(p.retries.first_after_post)),
    ("no 2nd attempt when tallied", lambda p: p.retries.unretried),
    ("all delivered within --drain", lambda p: "yes" if p.delivered_all else "NO"),
    ("the healthy endpoint's breaker opened", lambda p: f"{p.healthy_trips} times"),
    ("PostgreSQL deadlocks", lambda p: p.deadlocks),
    ("most deliver tasks waiting in the queue", lambda p: p.queue_max),
]


def report(result: Result, args: argparse.Namespace) -> None:
    print(
        f"\nmachine: {os.cpu_count()} cores; worker: Procfile, WORKER_CONCURRENCY="
        f"{args.concurrency}; healthy {args.rate:g} msg/s; dead host: {args.dead},"
        f" {args.backlog} messages; broker {args.broker}"
    )
    print("| healthy endpoint | no dead backlog (baseline) | dead host's backlog |")
    print("|---|---|---|")
    for label, value in ROWS:
        print(f"| {label} | {value(result.baseline)} | {value(result.backlog)} |")
    slices = Counter()
    worst: dict[int, float] = {}
    for started, late in result.backlog.retries.second_late:
        n = int((started - result.backlog.started) // 30)
        slices[n] += 1
        worst[n] = max(worst.get(n, late), late)
    print(
        "2nd attempt late, per 30 s of the backlog phase (by first attempt; messages, max): "
        + ", ".join(
            f"{n * 30}-{n * 30 + 30} s: {slices[n]}, {worst[n]:.1f} s" for n in sorted(slices)
        )
    )
    parks = [runtime for _, r, runtime in result.dead_tasks if r == "'deferred'"]
    print(
        f"\nbacklog inserted in {result.insert_seconds:.1f} s; over the next"
        f" {result.run_seconds:.0f} s: {len(result.dead_tasks)} deliver tasks for the dead"
        f" host's messages, {result.dead_attempts} attempts recorded, breaker opened"
        f" {result.dead_trips} times; {result.dead_pending} of {args.backlog} still pending;"
        f" tasks that parked: {len(parks)}, runtime {describe(parks)} (p50 / p99 / max)"
    )
    minutes = int(result.run_seconds // 60) + 1
    print("| minute after the insert | dead host's deliver tasks | by result |")
    print("|---|---|---|")
    for minute in range(minutes):
        results = Counter(
            r for at, r, _ in result.dead_tasks if minute * 60 <= at < minute * 60 + 60
        )
        detail = ", ".join(f"{name} {n}" for name, n in results.most_common())
        print(f"| {minute + 1} | {sum(results.values())} | {detail or '—'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=120.0, help="the backlog phase")
    parser.add_argument("--baseline-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=5.0, help="healthy messages a second")
    parser.add_argument(
        "--drain", type=float, default=240.0, help="seconds a phase waits for its last retries"
    )
    parser.add_argument("--dead", choices=["refuse", "503"], default="refuse")
    parser.add_argument("--concurrency", type=int, default=64, help="WORKER_CONCURRENCY")
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    args = parser.parse_args()
    report(run(args), args)


if __name__ == "__main__":
    main()
