"""Benchmark: how fast one API process accepts messages (issue 17 goal 1).

    PYTHONPATH=. .venv/bin/python -m bench.bench_accept [--seconds 10] [--connections 16]
        [--processes 1,2] [--broker redis|rabbitmq] [--tasks 5000]

A fresh database (Alembic head) and an application with one endpoint (nobody delivers:
no worker runs). ``wrk -t2 -c{connections}`` posts the same 230-byte message for
``--seconds`` (after 2 s of warm-up) to ``POST /v1/apps/{app}/messages`` with an API key
of the application (scoped ``app:…``), the per-key rate limit on at a limit it never
reaches, as a deployment runs it; once per ``WEB_CONCURRENCY`` in ``--processes``.
Checked after each run: every 202 is a message row, and no answer was anything else.

Baselines in the same run:

* ``GET /live`` on the same API process (FastAPI and uvicorn, no I/O);
* a bare FastAPI endpoint (``bench/accept_bare_app.py``) writing the same two rows with
  psycopg in one statement, under the same uvicorn: no auth, no validation, no publish;
* Celery ``send_task`` of a delivery task from one producer (the API's publisher),
  ``--tasks`` one after another.

Needs ``wrk`` (``apt install wrk``). The broker's queues of the run are deleted after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack

import httpx
import psycopg
from kombu import Connection

from common.broker import DELIVER_TASK, publisher, queue_names
from common.config import load_settings
from tests.support.brokers import RABBITMQ_URL
from tests.support.servers import JengaProcess, base_redis_url, free_port, jenga_env, wait_for
from tests.support.stack import AUTH, fresh_database, running, stack_env, start_api

PAYLOAD = {"order": "ord_1234567890", "amount": 4200, "currency": "EUR", "note": "x" * 123}
BODY = json.dumps({"event_type": "invoice.paid", "payload": PAYLOAD}, separators=(",", ":"))
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str], post: bool) -> dict:
    """Requests/s, p50 and p99 (ms), requests and non-2xx answers of one wrk run."""
    lines = []
    if post:
        lines += ['wrk.method = "POST"', f"wrk.body = '{BODY}'"]
        headers = {**headers, "Content-Type": "application/json"}
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    command = ["wrk", "-t2", f"-c{connections}", "--latency", "-s", script.name, url]
    subprocess.run([*command[:1], "-d2s", *command[1:]], capture_output=True, check=True)
    out = subprocess.run(
        [*command[:1], f"-d{seconds}s", *command[1:]], capture_output=True, text=True, check=True
    ).stdout
    os.unlink(script.name)

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)$", out, re.M).groups()
        return float(value) * UNITS[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": int(errors.group(1)) if errors else 0,
    }


def row(name: str, result: dict) -> str:
    return (
        f"| {name} | {result['rate']:,.0f} | {result['p50']:.1f} | {result['p99']:.1f}"
        f" | {result.get('errors', 0)} |"
    )


def messages_stored(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM webhook_messages").fetchone()[0]


def send_task_rate(settings, tasks: int) -> dict:
    queue = f"{settings.jenga_namespace}.bench_send"
    sender = publisher(settings, "bench-accept")
    latencies = []
    try:
        for n in range(tasks + 100):
            started = time.perf_counter()
            sender.send_task(DELIVER_TASK, args=(f"dlv_{n:032d}",), queue=queue, retry=False)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        sender.close()
    measured = sorted(latencies[100:])
    return {
        "rate": len(measured) / (sum(measured) / 1000),
        "p50": measured[len(measured) // 2],
        "p99": measured[int(len(measured) * 0.99)],
    }


def delete_queues(broker_url: str, names: list[str]) -> None:
    with Connection(broker_url) as conn:
        for name in names:
            try:
                conn.default_channel.queue_delete(name)
            except Exception as error:  # already gone
                print(f"(queue {name}: {error})", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    namespace = f"benchacc{uuid.uuid4().hex[:6]}"
    broker_url = RABBITMQ_URL if args.broker == "rabbitmq" else base_redis_url()
    settings_env = {
        "REDIS_URL": base_redis_url(),
        "BROKER_URL": broker_url,
        "JENGA_NAMESPACE": namespace,
        "LOG_LEVEL": "WARNING",
    }
    results: list[str] = []
    print(f"machine: {os.cpu_count()} cores; broker {args.broker}; wrk -t2 -c{args.connections}")
    try:
        with fresh_database() as database_url:
            with ExitStack() as stack:
                env = stack_env(
                    settings_env,
                    database_url,
                    API_RATE_LIMIT_PER_SECOND="100000",
                    API_RATE_LIMIT_BURST="1000000",
                )
                client = start_api(stack, env)
                app = client.post("/v1/apps", json={"name": "bench"}, headers=AUTH).json()
                key = client.post(
                    "/v1/keys", json={"scopes": [f"app:{app['id']}"]}, headers=AUTH
                ).json()["key"]
                endpoint = client.post(
                    f"/v1/apps/{app['id']}/endpoints",
                    json={"url": "http://127.0.0.1:9/bench"},
                    headers=AUTH,
                ).json()
                live = wrk(f"{client.base_url}/live", args.seconds, args.connections, {}, False)
                results.append(row("`GET /live` (same process)", live))
                print(results[-1], flush=True)

            bare_port = free_port()
            bare_env = jenga_env(
                BARE_DATABASE_URL=database_url,
                BARE_APP_ID=app["id"],
                BARE_ENDPOINT_ID=endpoint["id"],
            )
            with running(
                _process(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "bench.accept_bare_app:app",
                        "--port",
                        str(bare_port),
                        "--no-access-log",
                        "--log-level",
                        "warning",
                    ],
                    bare_env,
                )
            ):
                wait_for(lambda: _up(f"http://127.0.0.1:{bare_port}/docs"), 30, what="bare app")
                bare = wrk(
                    f"http://127.0.0.1:{bare_port}/bare", args.seconds, args.connections, {}, True
                )
                assert bare["errors"] == 0, bare
                results.append(row("bare FastAPI + psycopg INSERT (no auth, no publish)", bare))
                print(results[-1], flush=True)

            for processes in [int(p) for p in args.processes.split(",")]:
                with ExitStack() as stack:
                    env = stack_env(
                        settings_env,
                        database_url,
                        API_RATE_LIMIT_PER_SECOND="100000",
                        API_RATE_LIMIT_BURST="1000000",
                        WEB_CONCURRENCY=str(processes),
                    )
                    client = start_api(stack, env)
                    before = messages_stored(database_url)
                    accepted = wrk(
                        f"{client.base_url}/v1/apps/{app['id']}/messages",
                        args.seconds,
                        args.connections,
                        {"Authorization": f"Bearer {key}"},
                        True,
                    )
                    stored = messages_stored(database_url) - before
                    # wrk's warm-up run posted too; its messages are stored before `before`.
                    assert accepted["errors"] == 0, accepted
                    assert stored >= accepted["requests"], (stored, accepted)
                    results.append(row(f"`POST …/messages`, WEB_CONCURRENCY={processes}", accepted))
                    print(results[-1], flush=True)

        settings = load_settings(
            {**settings_env, "DATABASE_URL": "postgresql://unused@127.0.0.1/unused"},
            wait_seconds=0,
        )
        results.append(
            row(
                f"Celery `send_task`, one producer, {args.tasks:,} tasks",
                send_task_rate(settings, args.tasks),
            )
        )
        print(results[-1], flush=True)
    finally:
        queues = [*queue_names(namespace).values(), f"{namespace}.bench_send"]
        delete_queues(broker_url, queues)
    print("\n| call | req/s | p50 ms | p99 ms | non-2xx |\n|---|---|---|---|---|")
    print("\n".join(results))


def _process(command: list[str], env: dict[str, str]) -> JengaProcess:
    return JengaProcess(command, env, "bare")


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
