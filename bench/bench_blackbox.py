"""Black-box run (issue 10): does every message get delivered, on Redis and on
RabbitMQ, when the worker is SIGKILLed mid-run and receivers fail?

The stack is run as a user runs it, from the Procfile: the release line
(migrations) on a fresh database, then web, beat, ops and worker (the
deliveries worker: prefork, the Procfile's concurrency), with BROKER_URL
pointing at the machine's Redis or RabbitMQ and a JENGA_NAMESPACE of the
run's own. Messages go in through the HTTP API to 10 endpoints on one local
receiver.

* Phase 1: post --first messages (300), wait until all are delivered.
* Phase 2: half the endpoints now answer each message's first attempt with
  503 (then accept); post --second messages (400); once a quarter of them
  have reached the receiver, SIGKILL the deliveries worker's process group
  (main process and prefork children), start a new one, and wait (at most
  --cap seconds) until all are delivered.

Printed per broker: messages accepted, delivered, missing; POSTs the receiver
got; duplicate deliveries (a webhook-id answered 2xx more than once) and
whether a payload ever came under a second webhook-id; phase durations; and
the time from the SIGKILL to the last message's first delivery. Exits 1 if
any accepted message is missing.

    .venv/bin/python -m bench.bench_blackbox [--broker redis|amqp|both]
        [--first 300] [--second 400] [--cap 900] [--redispatch 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

from common.redis.keys import RedisKeys
from tests.support.brokers import RABBITMQ_URL, Broker
from tests.support.receiver import WebhookReceiver
from tests.support.servers import (
    ROOT,
    JengaProcess,
    base_database_url,
    base_redis_url,
    wait_for,
)
from tests.support.stack import AUTH, create_endpoint, running, stack_env, start_api, start_beat

BROKER_URLS = {"redis": "redis://127.0.0.1:6379/1", "amqp": RABBITMQ_URL}
ENDPOINTS = 10  # the even-numbered half fail each message's first attempt in phase 2
SCHEDULE = "100ms,200ms,200ms,300ms,300ms,500ms,500ms,500ms,500ms,500ms,500ms"  # as the fault test
LATE_SECONDS = 60  # a message first delivered this long after the kill waited for a redispatch


# --- the Procfile's processes ---------------------------------------------------------------


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def procfile_command(role: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The Procfile's line for ``role`` run by a shell (it expands ``${VAR:-default}``),
    ``exec``ed so that the process group is the process itself and its children."""
    # The venv's bin first, as an activated venv would have it: `celery`, `python`, `alembic`.
    env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    return ["sh", "-c", f"exec {procfile()[role]}"], env


def release(env: dict[str, str]) -> None:
    args, env = procfile_command("release", env)
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the release process (migrations) failed:\n{done.stdout}{done.stderr}")


def start_worker(stack: ExitStack, env: dict[str, str], role: str = "worker") -> JengaProcess:
    worker = stack.enter_context(running(JengaProcess(*procfile_command(role, env), role)))
    worker.wait_for_output("ready.", timeout=60)
    return worker


def other_workers() -> list[str]:
    """The Procfile's other long-running lines: today ``ops``, the worker of the
    default and alarms queues, where beat's dispatcher (retries, redispatch) runs."""
    return [
        role for role in procfile() if role not in ("release", "web", "worker", "beat", "flower")
    ]


# --- the receiver's side ----------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the receiver answered, and when: half the endpoints fail each
    message's first attempt with 503 while ``failing`` is on."""

    failing: bool = False
    # (when, webhook-id, status answered), in the order the receiver answered
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    _tried: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, received) -> int:
        endpoint = int(received.path.rsplit("/", 1)[1])
        with self._lock:
            first = received.webhook_id not in self._tried
            self._tried.add(received.webhook_id)
            status = 503 if self.failing and first and endpoint % 2 == 0 else 200
            self.answers.append((time.monotonic(), received.webhook_id, status))
        return status

    def first_delivered(self) -> dict[str, float]:
        """webhook-id -> when the receiver first answered it 2xx."""
        with self._lock:
            answers = list(self.answers)
        first: dict[str, float] = {}
        for at, webhook_id, status in answers:
            if status < 300:
                first.setdefault(webhook_id, at)
        return first


# --- the client's side ------------------------------------------------------------------------


def post_messages(
    client: httpx.Client, endpoints: list[str], phase: int, count: int, pool: ThreadPoolExecutor
) -> list:
    def post(seq: int) -> str | None:
        response = client.post(
            "/v1/messages",
            headers=AUTH,
            json={
                "endpoint_id": endpoints[seq % len(endpoints)],
                "event_type": "blackbox.run",
                "payload": {"phase": phase, "seq": seq},
            },
        )
        return response.json()["id"] if response.status_code == 202 else None

    return [pool.submit(post, seq) for seq in range(count)]


def settle(
    client: httpx.Client, deliveries: Deliveries, ids: list[str | None], seconds: float
) -> bool:
    """Wait until the receiver has accepted every message of ``ids`` and none is
    pending any more (a delivery whose recording a SIGKILL lost is sent again)."""

    def settled() -> bool:
        if not set(ids) - {None} <= deliveries.first_delivered().keys():
            return False
        pending = client.get("/v1/messages", params={"status": "pending", "limit": 1}, headers=AUTH)
        return pending.status_code == 200 and not pending.json()["data"]

    try:
        wait_for(settled, seconds, interval=0.5, what="every message delivered")
        return True
    except AssertionError:
        return False


# --- one run --------------------------------------------------------------------------------


@dataclass
class Timing:
    first_seconds: float  # phase 1, first POST to last first delivery
    second_seconds: float  # phase 2, likewise
    kill_to_last_seconds: float
    new_worker_ready_seconds: float
    owed_at_kill: int  # phase 2 messages not yet delivered when the worker was killed
    late: list[str]  # phase 2 messages first delivered more than LATE_SECONDS after the kill


@dataclass
class Result:
    broker: str
    accepted: int
    refused: int  # POSTs not answered 202
    delivered: int
    missing: list[str]
    posts: int
    duplicate_posts: int  # 2xx answers beyond the first, per webhook-id
    duplicated_ids: int  # webhook-ids answered 2xx more than once
    one_id_per_payload: bool
    unverified: int
    timing: Timing


def run(broker: str, args: argparse.Namespace) -> Result:
    namespace = f"bb{uuid.uuid4().hex[:8]}"
    base = base_database_url()
    database = f"jenga_{namespace}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    settings = {
        "REDIS_URL": base_redis_url(),
        "BROKER_URL": BROKER_URLS[broker],
        "JENGA_NAMESPACE": namespace,
        "CONFIG_WAIT_SECONDS": "0",
    }
    env = stack_env(
        settings,
        f"{base.rpartition('/')[0]}/{database}",
        DELIVERY_RETRY_SCHEDULE=SCHEDULE,
        DELIVERY_RETRY_JITTER="0.2",
        DELIVERY_DISPATCH_INTERVAL_SECONDS="1",
        DELIVERY_REDISPATCH_SECONDS=str(args.redispatch),
        # Not what this run is about (as in tests/system/test_delivery_faults.py): receivers
        # failing a third of the calls would (rightly) trip the breaker and shrink the AIMD limit.
        BREAKER_FAILURE_THRESHOLD="0",
        BREAKER_FAILURE_RATE="0",
        LIMIT_MIN="50",
        LIMIT_INITIAL="50",
        # Every Procfile worker here is celery@<host>: keep its heartbeat file out of others' way.
        HEARTBEAT_DIR=tempfile.mkdtemp(prefix=f"jenga-{namespace}-"),
    )
    try:
        release(env)
        return run_stack(broker, env, args)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        Broker(broker, BROKER_URLS[broker] if broker == "amqp" else None).delete_queues(namespace)
        for url in (settings["REDIS_URL"], BROKER_URLS["redis"]):
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=RedisKeys(namespace).key("*")):
                client.delete(key)


def run_stack(broker: str, env: dict[str, str], args: argparse.Namespace) -> Result:
    deliveries = Deliveries()
    with ExitStack() as stack, WebhookReceiver() as receiver, ThreadPoolExecutor(4) as pool:
        receiver.respond = deliveries.respond
        client = start_api(stack, env)
        start_beat(stack, env)
        for role in other_workers():
            start_worker(stack, env, role)
        worker = start_worker(stack, env)
        endpoints = [create_endpoint(client, receiver, f"/{n}")["id"] for n in range(ENDPOINTS)]

        started = time.monotonic()
        first = [f.result() for f in post_messages(client, endpoints, 1, args.first, pool)]
        settle(client, deliveries, first, 300)
        first_seconds = last_delivery(deliveries, first) - started
        print(f"{broker}: phase 1 delivered in {first_seconds:.1f} s", flush=True)

        deliveries.failing = True
        answered_before = len(deliveries.answers)
        started = time.monotonic()
        futures = post_messages(client, endpoints, 2, args.second, pool)
        wait_for(
            lambda: len(deliveries.answers) - answered_before >= args.second // 4,
            120,
            what="deliveries of phase 2 under way",
        )
        killed_at = time.monotonic()
        worker.kill()  # SIGKILL to the process group: the main process and its prefork children
        worker.proc.wait(10)
        owed_at_kill = args.second - len(deliveries.first_delivered().keys() - set(first))
        start_worker(stack, env)
        ready_seconds = time.monotonic() - killed_at
        print(
            f"{broker}: worker SIGKILLed with {owed_at_kill} phase 2 messages undelivered,"
            f" new worker ready after {ready_seconds:.1f} s",
            flush=True,
        )
        second = [f.result() for f in futures]
        if not settle(client, deliveries, second, args.cap):
            print(f"{broker}: not every message delivered after {args.cap} s", flush=True)

        last = last_delivery(deliveries, second)
        delivered_at = deliveries.first_delivered()
        timing = Timing(
            first_seconds,
            last - started,
            last - killed_at,
            ready_seconds,
            owed_at_kill,
            late=[i for i in second if delivered_at.get(i, 0) - killed_at > LATE_SECONDS],
        )
        ids = [i for i in first + second if i]
        statuses = {i: client.get(f"/v1/messages/{i}", headers=AUTH).json()["status"] for i in ids}
        return tally(broker, deliveries, receiver, statuses, len(first + second) - len(ids), timing)


def last_delivery(deliveries: Deliveries, ids: list[str | None]) -> float:
    first = deliveries.first_delivered()
    return max((first[i] for i in ids if i in first), default=float("nan"))


def tally(
    broker: str,
    deliveries: Deliveries,
    receiver: WebhookReceiver,
    statuses: dict[str, str],
    refused: int,
    timing: Timing,
) -> Result:
    """What the receiver saw against what the API accepted and says."""
    delivered_at = deliveries.first_delivered()
    delivered = [i for i, status in statuses.items() if status == "delivered" and i in delivered_at]
    oks = Counter(webhook_id for _, webhook_id, status in deliveries.answers if status < 300)
    ids_per_payload: dict[tuple, set[str]] = defaultdict(set)
    for request in receiver.requests:
        data = request.body["data"]
        ids_per_payload[data["phase"], data["seq"]].add(request.webhook_id)
    return Result(
        broker=broker,
        accepted=len(statuses),
        refused=refused,
        delivered=len(delivered),
        missing=sorted(statuses.keys() - set(delivered)),
        posts=len(receiver.requests),
        duplicate_posts=sum(n - 1 for n in oks.values()),
        duplicated_ids=sum(1 for n in oks.values() if n > 1),
        one_id_per_payload=all(len(ids) == 1 for ids in ids_per_payload.values()),
        unverified=sum(1 for r in receiver.requests if not r.verified),
        timing=timing,
    )


# --- report ---------------------------------------------------------------------------------

ROWS = [
    ("messages accepted (202)", lambda r: r.accepted),
    ("POSTs refused (not 202)", lambda r: r.refused),
    ("delivered (2xx seen, status delivered)", lambda r: r.delivered),
    ("missing", lambda r: len(r.missing)),
    ("POSTs the receiver got", lambda r: r.posts),
    ("unverified signatures", lambda r: r.unverified),
    ("duplicate deliveries (extra 2xx)", lambda r: f"{r.duplicate_posts} ({r.duplicated_ids} ids)"),
    ("one webhook-id per payload", lambda r: "yes" if r.one_id_per_payload else "NO"),
    ("phase 1: first POST to last delivery", lambda r: f"{r.timing.first_seconds:.1f} s"),
    ("phase 2: first POST to last delivery", lambda r: f"{r.timing.second_seconds:.1f} s"),
    ("phase 2 messages undelivered at the kill", lambda r: r.timing.owed_at_kill),
    ("SIGKILL to new worker ready", lambda r: f"{r.timing.new_worker_ready_seconds:.1f} s"),
    ("SIGKILL to last delivery", lambda r: f"{r.timing.kill_to_last_seconds:.1f} s"),
    (f"first delivered > {LATE_SECONDS} s after the kill", lambda r: len(r.timing.late)),
]


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\nmachine: {os.cpu_count()} cores; {args.first} + {args.second} messages, "
        f"{ENDPOINTS} endpoints; DELIVERY_REDISPATCH_SECONDS={args.redispatch:g}"
    )
    print("| measure | " + " | ".join(r.broker for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for label, value in ROWS:
        print(f"| {label} | " + " | ".join(str(value(r)) for r in results) + " |")
    for r in results:
        if r.timing.late:
            print(f"{r.broker}: first delivered > {LATE_SECONDS} s after the kill: {r.timing.late}")
        if r.missing:
            print(f"{r.broker}: missing {r.missing[:20]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "amqp", "both"], default="both")
    parser.add_argument("--first", type=int, default=300)
    parser.add_argument("--second", type=int, default=400)
    parser.add_argument("--cap", type=float, default=900, help="seconds phase 2 may take")
    parser.add_argument(
        "--redispatch",
        type=float,
        default=300.0,
        help="DELIVERY_REDISPATCH_SECONDS (the product's default)",
    )
    args = parser.parse_args()
    brokers = ["redis", "amqp"] if args.broker == "both" else [args.broker]
    results = []
    for broker in brokers:
        results.append(run(broker, args))
        print(f"{broker}: done, {len(results[-1].missing)} missing", flush=True)
    report(results, args)
    sys.exit(1 if any(r.missing for r in results) else 0)


if __name__ == "__main__":
    main()
