"""Costs as the fleet grows (issue 17 goal 4): Redis commands per closed-breaker call and
per delivery with 1 to 8 worker processes, and ``/metrics`` and ``/status`` with 10,000
services seen.

Everything runs against a throwaway ``redis-server`` on a free port (no persistence), so
``INFO commandstats`` counts this run's commands and nobody else's. Redis counts the
commands a Lua script runs as well as the ``EVALSHA`` itself; the client round trips
(one per command sent, one per pipeline) are counted in each process by wrapping
redis-py's ``send_packed_command``.

1. ``calls``: P processes (fork) each make guarded calls for ``--seconds`` of a healthy no-op
   through ``GuardedTask.guard`` (breaker admission, a slot of the shared AIMD limit, the
   outcome), one service shared by all, as the worker's processes do. Before, each
   process sits idle for ``--idle`` s: the registries' threads' own commands, per
   process per second, subtracted from the busy phase.
2. ``deliveries``: P processes each run the delivery task's body in process
   (``worker.delivery.tasks.deliver``: claim, no ``rate_limit``, the guard, a POST to a
   local receiver, the record, the fleet metrics, the end-to-end metric) on deliveries
   of a fresh database, one endpoint.
3. ``views``: ``GET /metrics`` and ``GET /status`` in process (FastAPI ``TestClient``,
   admin token), median of ``--repeat``, with one receiver seen (baseline) and after
   guarded calls to ``--hosts`` receivers (``h<i>.wildcard.example``, as
   ``bench_many_hosts``); Redis commands per request (the API's idle monitors
   subtracted).

    PYTHONPATH=. .venv/bin/python -m bench.bench_redis_costs [--parts calls,deliveries,views]
        [--processes 1,2,4,8] [--seconds 3] [--deliveries 300] [--hosts 10000] [--repeat 9]
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import statistics
import time
import uuid
from collections import Counter
from contextlib import ExitStack

import psycopg
import redis
from redis.connection import AbstractConnection

from common.config import load_settings, set_settings
from tests.support.http_server import FakeHTTPServer, Reply, Request
from tests.support.servers import RedisServer
from tests.support.stack import AUTH, TOKEN, fresh_database

ROUND_TRIPS = mp.Value("q", 0, lock=True)  # shared by the forked processes


def count_round_trips() -> None:
    """Count every write redis-py makes (a command, or a whole pipeline) in ROUND_TRIPS."""
    send = AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        with ROUND_TRIPS.get_lock():
            ROUND_TRIPS.value += 1
        return send(self, command, check_health)

    AbstractConnection.send_packed_command = counted


def commandstats(client: redis.Redis) -> Counter:
    stats = client.info("commandstats")
    return Counter({name[len("cmdstat_") :]: row["calls"] for name, row in stats.items()})


class Snapshot:
    """Commands Redis ran and round trips clients made since the last mark, less the
    reader's own ``INFO`` commands."""

    def __init__(self, client: redis.Redis):
        self.client = client
        self.mark()

    def mark(self) -> None:
        self.at, self.trips, self.stats = (
            time.monotonic(),
            ROUND_TRIPS.value,
            commandstats(self.client),
        )

    def since(self) -> tuple[float, int, Counter]:
        now, trips, stats = time.monotonic(), ROUND_TRIPS.value, commandstats(self.client)
        delta = stats - self.stats
        delta["info"] -= 1
        delta = +delta
        result = (now - self.at, trips - self.trips - 1, delta)
        self.at, self.trips, self.stats = now, trips, stats
        return result


def settings_for(redis_url: str, namespace: str, database_url: str = "", **extra: str):
    env = {
        "REDIS_URL": redis_url,
        "JENGA_NAMESPACE": namespace,
        "JENGA_ADMIN_TOKEN": TOKEN,
        "ALLOW_PRIVATE_DESTINATIONS": "true",
        "API_RATE_LIMIT_PER_SECOND": "0",
        "CONFIG_WAIT_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    # The calls touch no database: any well-formed URL will do.
    env["DATABASE_URL"] = database_url or "postgresql://unused@127.0.0.1:1/unused"
    return load_settings(env, wait_seconds=0)


# --- 1 and 2: the worker's processes --------------------------------------------------


def guarded_call() -> None:
    from worker.guarded import GuardedTask

    task = GuardedTask()
    with task.guard("bench:noop", defer=False) as call:
        call.record(failed=False)


def flush() -> None:
    from common.guards.limit.registry import current_limits
    from worker.guarded import registry

    registry().flush()
    deadline = time.monotonic() + 5
    limits = current_limits()
    while limits is not None and limits.active() and time.monotonic() < deadline:
        time.sleep(0.02)


def worker_process(
    work: str, ids: list[str], idle: float, seconds: float, barrier, results
) -> None:
    """One worker process: warm up (threads started, the limit idle again), sit idle,
    then the work: a delivery of each of ``ids`` after the first (which warms up), or
    guarded calls for ``seconds``."""
    if work == "deliveries":
        from worker.delivery.tasks import deliver

        def one(item: str) -> None:
            state = deliver(item)
            assert state == "delivered", state
    else:

        def one(item: str) -> None:
            guarded_call()

    one(ids[0])
    flush()
    barrier.wait()  # parent marks
    time.sleep(idle)
    barrier.wait()  # parent reads the idle phase
    barrier.wait()
    started = time.monotonic()
    done = 0
    if work == "deliveries":
        for item in ids[1:]:
            one(item)
            done += 1
    else:
        while time.monotonic() - started < seconds:
            one("call")
            done += 1
    flush()
    results.put((time.monotonic() - started, done))
    barrier.wait()  # parent reads the busy phase


def run_fleet(
    client: redis.Redis, work: str, batches: list[list[str]], idle: float, seconds: float
) -> dict[str, object]:
    processes = len(batches)
    barrier = mp.Barrier(processes + 1, timeout=300)  # a child that failed ends the run
    results = mp.Queue()
    context = mp.get_context("fork")
    children = [
        context.Process(target=worker_process, args=(work, ids, idle, seconds, barrier, results))
        for ids in batches
    ]
    for child in children:
        child.start()
    snapshot = Snapshot(client)
    barrier.wait()
    snapshot.mark()
    barrier.wait()
    idle_seconds, idle_trips, idle_stats = snapshot.since()
    barrier.wait()
    barrier.wait()
    busy_seconds, busy_trips, busy_stats = snapshot.since()
    took, done = zip(*(results.get(timeout=60) for _ in children), strict=True)
    for child in children:
        child.join(30)
    units = sum(done)
    idle_rate = sum(idle_stats.values()) / idle_seconds  # all P processes
    background = idle_rate * busy_seconds
    return {
        "processes": processes,
        "units": units,
        "seconds": max(took),
        "idle_per_process_s": idle_rate / processes,
        "busy_per_process_s": sum(busy_stats.values()) / busy_seconds / processes,
        "idle_by_command": {k: v / idle_seconds / processes for k, v in idle_stats.items()},
        "per_unit": sum(busy_stats.values()) / units,
        "per_unit_net": (sum(busy_stats.values()) - background) / units,
        "trips_per_unit": busy_trips / units,
        "idle_trips_per_process_s": idle_trips / idle_seconds / processes,
        "by_command": {k: v / units for k, v in busy_stats.items()},
        "by_command_per_process_s": {
            k: v / busy_seconds / processes for k, v in busy_stats.items()
        },
        "trips_per_process_s": busy_trips / busy_seconds / processes,
    }


class Receiver(FakeHTTPServer):
    def answer(self, request: Request) -> Reply:
        return Reply(200, body="ok")


def make_deliveries(database_url: str, url: str, count: int) -> list[str]:
    from tests.support.message_rows import insert_delivery, insert_endpoint

    with psycopg.connect(database_url, autocommit=True) as conn:
        endpoint_id = insert_endpoint(conn, url)
        # insert_endpoint's secret is no key: delivery signs with a real one
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        conn.execute(
            "UPDATE webhook_endpoints SET secret = %s WHERE id = %s", (secret, endpoint_id)
        )
        return [insert_delivery(conn, endpoint_id) for _ in range(count)]


def fleet_rows(redis_url: str, args, work: str, sizes: list[int]) -> list[dict]:
    rows = []
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with ExitStack() as stack:
        database_url = ""
        if work == "deliveries":
            database_url = stack.enter_context(fresh_database())
            receiver = stack.enter_context(Receiver())
        for processes in sizes:
            namespace = f"benchcost{uuid.uuid4().hex[:6]}"
            set_settings(settings_for(redis_url, namespace, database_url))
            if work == "deliveries":
                each = args.deliveries
                ids = make_deliveries(database_url, receiver.url, processes * (each + 1))
                batches = [ids[i::processes] for i in range(processes)]
            else:
                batches = [["call"] for _ in range(processes)]
            rows.append(run_fleet(client, work, batches, args.idle, args.seconds))
            print_fleet_row(work, rows[-1])
    set_settings(None)
    return rows


def print_fleet_row(work: str, row: dict) -> None:
    # Guarded calls cost Redis by the clock (batched flushes, limit syncs): per second.
    by = row["by_command"] if work == "deliveries" else row["by_command_per_process_s"]
    top = sorted(by.items(), key=lambda kv: -kv[1])
    idle = sorted(row["idle_by_command"].items(), key=lambda kv: -kv[1])
    print(
        f"| {work} | {row['processes']} | {row['units']} | {row['seconds']:.1f} "
        f"| {row['per_unit']:.3f} | {row['per_unit_net']:.3f} | {row['trips_per_unit']:.3f} "
        f"| {row['busy_per_process_s']:.0f} ({row['trips_per_process_s']:.0f} round trips) "
        f"| {', '.join(f'{k} {v:.3f}' for k, v in top[:8])} "
        f"| {row['idle_per_process_s']:.1f} ({', '.join(f'{k} {v:.1f}' for k, v in idle)}) "
        f"| {row['idle_trips_per_process_s']:.1f} |",
        flush=True,
    )


# --- 3: the operators' views ------------------------------------------------------------


def view_costs(client: redis.Redis, api, repeat: int, idle: float) -> dict[str, dict]:
    snapshot = Snapshot(client)
    time.sleep(idle)
    idle_seconds, idle_trips, idle_stats = snapshot.since()
    idle_rate = sum(idle_stats.values()) / idle_seconds
    out = {}
    for path in ("/metrics", "/status"):
        assert api.get(path, headers=AUTH).status_code == 200  # warm
        times = []
        snapshot.mark()
        for _ in range(repeat):
            started = time.perf_counter()
            response = api.get(path, headers=AUTH)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text[:300]
        seconds, trips, stats = snapshot.since()
        total = sum(stats.values()) - idle_rate * seconds
        out[path] = {
            "ms": statistics.median(times),
            "commands": total / repeat,
            "trips": (trips - idle_trips / idle_seconds * seconds) / repeat,
            "by_command": {k: v / repeat for k, v in stats.items()},
            "bytes": len(response.content),
        }
    out["keys"] = client.dbsize()
    return out


def view_rows(redis_url: str, args) -> list[tuple[str, dict]]:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from bench.bench_many_hosts import Worker
    from common.guards.names import webhook_service

    namespace = f"benchviews{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    rows = []
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database())
        settings = settings_for(redis_url, namespace, database_url)
        set_settings(settings)
        api = stack.enter_context(TestClient(create_app(settings)))
        for hosts in (1, args.hosts):
            worker = Worker(client, namespace, settings.metrics_max_services)
            try:
                for i in range(hosts):
                    worker.call(webhook_service(f"h{i}.wildcard.example"))
                worker.settle()
            finally:
                worker.close()
            rows.append(
                (f"{hosts} receivers seen", view_costs(client, api, args.repeat, args.idle))
            )
            print_view_rows(*rows[-1])
    set_settings(None)
    return rows


def print_view_rows(stage: str, row: dict) -> None:
    for path in ("/metrics", "/status"):
        view = row[path]
        top = sorted(view["by_command"].items(), key=lambda kv: -kv[1])
        print(
            f"| {path} | {stage} ({row['keys']} keys) | {view['ms']:.1f} "
            f"| {view['commands']:.0f} | {view['trips']:.0f} "
            f"| {', '.join(f'{k} {v:.0f}' for k, v in top)} | {view['bytes']} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="calls,deliveries,views")
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--delivery-processes", default="1,4")
    parser.add_argument("--seconds", type=float, default=3.0, help="of guarded calls")
    parser.add_argument("--deliveries", type=int, default=300, help="per process")
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--idle", type=float, default=3.0, help="idle phase, seconds")
    args = parser.parse_args()
    parts = args.parts.split(",")
    count_round_trips()
    server = RedisServer().start()
    try:
        print(f"# {os.cpu_count()} cores, load average {os.getloadavg()}\n")
        header = (
            "| work | processes | units | took (s) | commands per unit | net of idle "
            "| round trips per unit | commands per process per s "
            "| by command (per delivery; per process per s for calls) "
            "| idle commands per process per s | idle round trips per process per s |"
        )
        if "calls" in parts or "deliveries" in parts:
            print(header + "\n|" + "---|" * 11)
        if "calls" in parts:
            fleet_rows(server.url, args, "calls", [int(p) for p in args.processes.split(",")])
        if "deliveries" in parts:
            sizes = [int(p) for p in args.delivery_processes.split(",")]
            fleet_rows(server.url, args, "deliveries", sizes)
        if "views" in parts:
            print(
                "\n| path | stage | median ms | Redis commands per request | round trips "
                "| by command | bytes |\n|---|---|---|---|---|---|---|"
            )
            view_rows(server.url, args)
        print(f"\n# load average after {os.getloadavg()}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
