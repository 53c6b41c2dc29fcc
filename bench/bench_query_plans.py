"""Benchmark: the hot statements' plans and times as the tables grow (issue 17 goal 4).

    PYTHONPATH=. .venv/bin/python -m bench.bench_query_plans [--sizes 10000,1000000,10000000]
        [--endpoints 100] [--fan-out 10] [--repeat 15]

For each size N, a fresh database (Alembic head) is filled by PostgreSQL itself
(``INSERT ... SELECT generate_series``: no API, no client round trip per row) with
N/F messages, each fanned out to F (``--fan-out``) of ``--endpoints`` endpoints of one
application: N deliveries (``--fan-out 1``: N messages, N deliveries). 97 % are
delivered, 2 % failed and 1 % pending an hour from now; at
every size 500 of those are due now, and one endpoint (the "hot" one) holds a backlog
of 500 more, due now: the same work at every size. Every delivered or failed delivery
has one attempt. Then, ``--repeat`` times each, the median execution time that
``EXPLAIN (ANALYZE)`` reports for:

* the worker's statements: the dispatcher's claim (``CLAIM_DUE``, a batch of 500),
  one delivery's claim (``CLAIM_ONE``), parking the hot endpoint behind an open
  breaker (``PARK``) and holding its backlog back past a rate's horizon
  (``RATE_PARK``), each in a transaction rolled back, so every repeat sees the same
  rows;
* the retention purge's batches (``EXPIRE``/``DELETE``, 500 messages, 1 day old);

and the median and 99th percentile wall time of the API's reads and write, in process: a page of
messages, a page of one endpoint's messages, a page of failed messages, one
message with its deliveries and attempts, and a POST that fans out to 10 endpoints;
the search filters (a common and a rare event type, a common and a rare channel, a
day's window, page 2 from the middle of the list) on both message lists, the attempts
lists (also filtered by ``status_code``: a common, a rare and an absent answer) and an
endpoint's stats (24 hours by hour, 30 days by day). Each GET's SELECTs
(of its last run) are captured and ``EXPLAIN (ANALYZE)``d too: their execution times
added up, and their scans, are printed as ``SQL of …``.

Flat (or logarithmic) in N is the goal; every index or table a plan scans is
printed for each statement, so a plan that changes with size shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from sqlalchemy import event

from api.app import create_app
from api.attempts import ENDPOINT_ATTEMPTS
from api.endpoints import ENDPOINT_MESSAGES
from api.messages import MESSAGES
from api.pagination import encode
from common.config import load_settings, set_settings
from tests.support.servers import base_redis_url
from tests.support.stack import TOKEN, fresh_database
from worker.delivery.queries import CLAIM_DUE, CLAIM_ONE, PARK, RATE_PARK
from worker.tasks.retention import DELETE_BATCH, EXPUNGE_BATCH

AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The same work to do at every size, so that only the table size differs: deliveries due
# now across the endpoints, and the hot endpoint's backlog.
DUE = 500
HOT_BACKLOG = 500

FILL = """
INSERT INTO webhook_apps (id, name) VALUES ('app_bench', 'bench');
INSERT INTO webhook_endpoints (id, app_id, url, secret)
SELECT 'ep_' || lpad(e::text, 4, '0'), 'app_bench', 'http://127.0.0.1:9/' || e,
       'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
FROM generate_series(0, %(endpoints)s - 1) e;
INSERT INTO webhook_messages (id, app_id, event_type, channels, payload, body, request_hash,
                              created_at)
SELECT 'msg_' || lpad(m::text, 9, '0'), 'app_bench',
       CASE WHEN m %% 1000 = 7 THEN 'bench.rare' WHEN m %% 10 = 5 THEN 'bench.tenth'
            ELSE 'bench.event' END,
       CASE WHEN m %% 1000 = 3 THEN '["us", "vip"]'::jsonb
            ELSE (ARRAY[NULL, '["eu"]', '["eu", "us"]', '["us"]'])[m %% 4 + 1]::jsonb END,
       '{"n": 1}', '{"type":"bench.event","data":{"n":1}}', md5(m::text),
       now() - AGE
FROM generate_series(0, %(messages)s - 1) m;
INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, attempt_count,
                                next_attempt_at, created_at, delivered_at)
SELECT 'dlv_' || lpad(m::text, 9, '0') || '_' || k, 'msg_' || lpad(m::text, 9, '0'),
       'ep_' || lpad(((m + k) %% %(endpoints)s)::text, 4, '0'),
       CASE WHEN r < 0.97 THEN 'delivered' WHEN r < 0.99 THEN 'failed' ELSE 'pending' END,
       CASE WHEN r < 0.99 THEN 1 ELSE 0 END,
       CASE WHEN r < 0.99 THEN NULL ELSE now() + interval '1 hour' END,
       now() - AGE,
       CASE WHEN r < 0.97 THEN now() - AGE END
FROM generate_series(0, %(messages)s - 1) m, generate_series(0, %(fan_out)s - 1) k,
     LATERAL (SELECT random() AS r OFFSET 0 * k * m) rand;
INSERT INTO webhook_messages (id, app_id, event_type, payload, body, request_hash)
SELECT 'msg_hot_' || m, 'app_bench', 'bench.event', '{"n": 1}',
       '{"type":"bench.event","data":{"n":1}}', md5(m::text)
FROM generate_series(0, %(hot)s - 1) m;
INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, next_attempt_at, created_at)
SELECT 'dlv_hot_' || m, 'msg_hot_' || m, 'ep_0000', 'pending', now(), now()
FROM generate_series(0, %(hot)s - 1) m;
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE id IN (SELECT id FROM webhook_deliveries
             WHERE status = 'pending' AND endpoint_id <> 'ep_0000' LIMIT %(due)s);
INSERT INTO webhook_attempts (delivery_id, number, started_at, duration_ms, status_code,
                              error, response_excerpt)
SELECT id, 1, created_at, 12,
       CASE WHEN status = 'delivered' THEN 200 WHEN right(id, 1) < '3' THEN NULL ELSE 500 END,
       CASE WHEN status = 'failed' AND right(id, 1) < '3' THEN 'ConnectError: refused' END,
       'ok'
FROM webhook_deliveries WHERE status <> 'pending';
""".replace("AGE", "make_interval(secs => (%(messages)s - m) * 2592000.0 / %(messages)s)")
# Messages spread over the last 30 days, oldest first; the hot endpoint (ep_0000) has its
# share of that history and a backlog of messages of its own, due now. For the lists'
# filters: event types bench.event (89.9 %), bench.tenth (10 %), bench.rare (0.1 %, every
# one sent to ep_0007 among others); channels none, eu, eu+us, us (a quarter each) and
# us+vip (0.1 %). Attempts: 200 (of the delivered, 97 % of them), 500 (70 % of the failed)
# and no answer (the other 30 %: status_code null, an error).


def explain(conn, query: str, params: dict, setup: tuple[str, dict] | None = None):
    """(execution ms, every table or index scan) of ``query`` in a rolled-back transaction."""
    with conn.transaction(force_rollback=True):
        if setup:
            conn.execute(*setup)
        plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params).fetchone()
    root = plan["QUERY PLAN"][0]
    scans: list[str] = []

    def walk(node):
        kind = node["Node Type"]
        if "Scan" in kind and kind not in ("CTE Scan", "Subquery Scan"):
            scans.append(f"{kind} {node.get('Index Name') or node.get('Relation Name', '')}")
        for child in node.get("Plans", []):
            walk(child)

    walk(root["Plan"])
    return root["Execution Time"], scans


def worker_statements(conn, repeat: int) -> dict[str, tuple[float, list[str]]]:
    due = conn.execute(
        "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND endpoint_id <> 'ep_0000'"
        " AND next_attempt_at <= now() LIMIT 1"
    ).fetchone()["id"]
    claim_params = {"id": due, "token": "t" * 32, "lease": 25, "round": 3600}
    claim_hot = (CLAIM_ONE, {**claim_params, "id": "dlv_hot_0"})
    hot = {"id": "dlv_hot_0", "token": "t" * 32}
    in_30_seconds = datetime.now(UTC) + timedelta(seconds=30)
    cases = {
        "CLAIM_DUE (batch 500)": (
            CLAIM_DUE,
            {"redispatch": 300, "batch": 500, "lookahead": 1.5},
            None,
        ),
        "CLAIM_ONE": (CLAIM_ONE, claim_params, None),
        "PARK (hot endpoint)": (PARK, {**hot, "until": in_30_seconds}, claim_hot),
        "RATE_PARK (hot endpoint)": (RATE_PARK, {**hot, "wait": 30}, claim_hot),
        "retention EXPUNGE batch": (EXPUNGE_BATCH, {"age": 86400, "batch": 500}, None),
        "retention DELETE batch": (DELETE_BATCH, {"age": 86400, "batch": 500}, None),
    }
    results = {}
    for name, (query, params, setup) in cases.items():
        runs = [explain(conn, query, params, setup) for _ in range(repeat)]
        results[name] = (statistics.median(ms for ms, _ in runs), runs[-1][1])
    return results


def search_calls(conn) -> dict[str, str]:
    """The lists' filters, attempts and stats (issue 16), with windows and iterators
    taken from the data: a day 15 days ago, and the middle of each list."""
    now = datetime.now(UTC)
    day = urlencode(
        {
            "since": (now - timedelta(days=15)).isoformat(),
            "until": (now - timedelta(days=14)).isoformat(),
        }
    )
    middle = "ORDER BY created_at LIMIT 1 OFFSET (SELECT count(*) / 2 FROM {table} {where})"
    message = conn.execute(
        "SELECT id, created_at FROM webhook_messages "
        + middle.format(table="webhook_messages", where="")
    ).fetchone()
    where = "WHERE endpoint_id = 'ep_0007'"
    delivery = conn.execute(
        f"SELECT id, created_at FROM webhook_deliveries {where} "
        + middle.format(table="webhook_deliveries", where=where)
    ).fetchone()
    messages_iterator = encode(MESSAGES, message["created_at"], message["id"])
    endpoint_iterator = encode(ENDPOINT_MESSAGES, delivery["created_at"], delivery["id"])
    attempts_iterator = encode(ENDPOINT_ATTEMPTS, delivery["created_at"], f"{delivery['id']}/1")
    app, endpoint = "/v1/apps/app_bench", "/v1/apps/app_bench/endpoints/ep_0007"
    return {
        "GET messages?event_type=(10 %)": f"{app}/messages?limit=50&event_type=bench.tenth",
        "GET messages?event_type=(0.1 %)": f"{app}/messages?limit=50&event_type=bench.rare",
        "GET messages?channel=(50 %)": f"{app}/messages?limit=50&channel=eu",
        "GET messages?channel=(0.1 %)": f"{app}/messages?limit=50&channel=vip",
        "GET messages?since&until (1 day)": f"{app}/messages?limit=50&{day}",
        "GET messages?channel=(0.1 %)&1 day": f"{app}/messages?limit=50&channel=vip&{day}",
        "GET messages, a page from the middle": (
            f"{app}/messages?limit=50&iterator={messages_iterator}"
        ),
        "GET endpoint's messages?event_type=(0.1 %)": (
            f"{endpoint}/messages?limit=50&event_type=bench.rare"
        ),
        "GET endpoint's messages?channel=(0.1 %)": f"{endpoint}/messages?limit=50&channel=vip",
        "GET endpoint's messages?since&until": f"{endpoint}/messages?limit=50&{day}",
        "GET endpoint's messages, middle page": (
            f"{endpoint}/messages?limit=50&iterator={endpoint_iterator}"
        ),
        "GET message's attempts": f"{app}/messages/msg_000000007/attempts",
        "GET endpoint's attempts?limit=50": f"{endpoint}/attempts?limit=50",
        "GET endpoint's attempts, middle page": (
            f"{endpoint}/attempts?limit=50&iterator={attempts_iterator}"
        ),
        "GET endpoint's attempts?status_code=2xx (97 %)": (
            f"{endpoint}/attempts?limit=50&status_code=2xx"
        ),
        "GET endpoint's attempts?status_code=5xx (1.4 %)": (
            f"{endpoint}/attempts?limit=50&status_code=5xx"
        ),
        "GET endpoint's attempts?status_code=none (0.6 %)": (
            f"{endpoint}/attempts?limit=50&status_code=none"
        ),
        "GET endpoint's attempts?status_code=418 (none)": (
            f"{endpoint}/attempts?limit=50&status_code=418"
        ),
        "GET message's attempts?status_code=5xx": (
            f"{app}/messages/msg_000000007/attempts?status_code=5xx"
        ),
        "GET endpoint stats (24 h by hour)": f"{endpoint}/stats",
        "GET endpoint stats (30 days by day)": f"{endpoint}/stats?period=day",
    }


class Statements:
    """The SELECTs a request sent (SQL and parameters, in psycopg's style), from the
    engine's cursor events."""

    def __init__(self, engine) -> None:
        self.seen: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, parameters))

    def explained(self, conn) -> tuple[float, list[str]]:
        """The last request's statements, each explained: their execution times added
        up, and every scan, statement by statement (" | " between them)."""
        taken, scans = 0.0, []
        for statement, parameters in self.seen:
            ms, found = explain(conn, statement, parameters)
            taken += ms
            scans.append("; ".join(found))
        self.seen = []
        return taken, [" | ".join(scans)]


def api_calls(
    database_url: str, repeat: int, conn
) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, list[str]]]]:
    """Wall times (median, 99th percentile) of the API's calls, and each GET's
    statements explained."""
    settings = load_settings(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": base_redis_url(),
            "JENGA_NAMESPACE": f"benchplan{uuid.uuid4().hex[:6]}",
            "JENGA_ADMIN_TOKEN": TOKEN,
            "CONFIG_WAIT_SECONDS": "0",
            "API_RATE_LIMIT_PER_SECOND": "0",
            "LOG_LEVEL": "WARNING",
        },
        wait_seconds=0,
    )
    set_settings(settings)
    calls = {
        "GET messages?limit=50": ("get", "/v1/apps/app_bench/messages?limit=50"),
        "GET endpoint's messages?limit=50": (
            "get",
            "/v1/apps/app_bench/endpoints/ep_0007/messages?limit=50",
        ),
        "GET messages?status=failed&limit=50": (
            "get",
            "/v1/apps/app_bench/messages?status=failed&limit=50",
        ),
        "GET one message (its deliveries)": ("get", "/v1/apps/app_bench/messages/msg_000000007"),
        **{name: ("get", path) for name, path in search_calls(conn).items()},
        "POST message": ("post", "/v1/apps/app_bench/messages"),
    }
    results, plans = {}, {}
    try:
        with ExitStack() as stack:
            client = stack.enter_context(TestClient(create_app(settings)))
            statements = Statements(client.app.state.read_engine)
            for name, (method, path) in calls.items():
                times = []
                for _ in range(repeat + 1):
                    started = time.perf_counter()
                    if method == "get":
                        response = client.get(path, headers=AUTH)
                    else:
                        body = {"event_type": "bench.event", "payload": {"n": 2}}
                        response = client.post(path, json=body, headers=AUTH)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code < 300, response.text[:300]
                measured = times[1:]  # the first warms caches
                p99 = statistics.quantiles(measured, n=100)[98] if repeat > 1 else measured[0]
                results[name] = (statistics.median(measured), p99)
                # Each run sent the same statements: explain the last run's.
                per_run = len(statements.seen) // (repeat + 1)
                statements.seen = statements.seen[len(statements.seen) - per_run :]
                if method == "get":
                    plans[f"SQL of {name}"] = statements.explained(conn)
    finally:
        set_settings(None)
    return results, plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000,10000000")
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--fan-out", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    table: dict[str, dict[int, float]] = {}
    p99s: dict[str, dict[int, float]] = {}
    plans: dict[str, dict[int, list[str]]] = {}
    for size in sizes:
        with fresh_database() as url:
            started = time.perf_counter()
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                params = {
                    "endpoints": args.endpoints,
                    "messages": size // args.fan_out,
                    "fan_out": args.fan_out,
                    "hot": HOT_BACKLOG,
                    "due": DUE,
                }
                for statement in FILL.split(";\n"):
                    if statement.strip() and not statement.strip().startswith("--"):
                        conn.execute(statement, params)
                conn.execute("VACUUM ANALYZE")
                fill_seconds = time.perf_counter() - started
                for name, (ms, scans) in worker_statements(conn, args.repeat).items():
                    table.setdefault(name, {})[size] = ms
                    plans.setdefault(name, {})[size] = scans
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                calls, statements = api_calls(url, args.repeat, conn)
            for name, (ms, p99) in calls.items():
                table.setdefault(name, {})[size] = ms
                p99s.setdefault(name, {})[size] = p99
            for name, (ms, scans) in statements.items():
                table.setdefault(name, {})[size] = ms
                plans.setdefault(name, {})[size] = scans
            print(f"size {size:,}: filled in {fill_seconds:.0f} s", flush=True)
    print(
        f"machine: {os.cpu_count()} cores; {args.endpoints} endpoints; fan-out"
        f" {args.fan_out}; median of"
        f" {args.repeat}; ms (worker statements: EXPLAIN ANALYZE execution time;"
        " API: wall time in process)"
    )
    print(f"{'':52s}" + "".join(f"{size:>14,}" for size in sizes))
    for name, by_size in table.items():
        print(f"{name:52s}" + "".join(f"{by_size[size]:14.2f}" for size in sizes))
    print(f"p99 of {args.repeat} (API: wall time in process), ms")
    for name, by_size in p99s.items():
        print(f"{name:52s}" + "".join(f"{by_size[size]:14.2f}" for size in sizes))
    print(json.dumps(plans, indent=1))


if __name__ == "__main__":
    main()
