"""Benchmark: what the retention purge costs the accept path, and how long it holds rows.

    PYTHONPATH=. .venv/bin/python -m bench.bench_retention [--rows 200000] [--batch 500]
        [--accept api|sql] [--baseline-seconds 10] [--chunk 1000000]

A fresh database (Alembic head) gets ``--rows`` finished messages, each with one delivered
delivery and one attempt, in order of creation: the oldest third 91-179 days old (past
ATTEMPT_RETENTION_DAYS: deleted), the next 31-89 days (past MESSAGE_RETENTION_DAYS:
expunged), the newest 0-29 days (kept). PostgreSQL fills it itself (``INSERT ... SELECT
generate_series``, ``--chunk`` rows a statement) with the secondary indexes and foreign
keys dropped, then rebuilds them from the definitions the migrations made: the same
schema as production, in a fraction of the time it takes to grow 10 M rows under nine
indexes.

The accept path runs back to back beside it, first with no purge (the baseline, same
run), then while retention runs one 60 s run after another (as beat would with a
backlog) until a run finds nothing: ``--accept api`` (the default) posts messages
through the API running as a real process (``POST /v1/apps/{app}/messages`` to one
endpoint); ``--accept sql`` commits what that request writes (the message and its
delivery) straight from a connection, without the API's own cost.

Dead rows matter at this size: every batch starts its index walk at the oldest entry,
and until a vacuum clears them the entries of the rows purged before it are walked
again. The shared test server runs with ``autovacuum = off``; where it does, the bench
stands in for it on the three tables as a default-configured server would (each table
checked every ``autovacuum_naptime``, 60 s; vacuumed past 50 + 20 % of its rows dead,
analysed past 50 + 10 % changed; ``vacuum_cost_delay`` 2 ms, ``vacuum_cost_limit``
200), and reports what it ran.

Reported: rows purged per second; the longest batch (one autocommit statement: the
longest time the purge held any lock); how often a backend of the bench database was
seen waiting for a lock (sampled every 100 ms); the vacuums; and the accept path's
requests per second and p50/p99 in both phases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack

import psycopg
import redis

from common.config import load_settings, set_settings
from tests.support.servers import base_redis_url
from tests.support.stack import AUTH, fresh_database, stack_env, start_api
from worker.tasks.retention import purge

APP, ENDPOINT = "app_bench", "ep_bench"
DAYS = "make_interval(secs => %(age)s * 86400)"

# The bench's rows only: what the migrations made, minus primary keys (kept: the seed
# appends to them in order) and the few rows of the other tables.
SECONDARY_INDEXES = """
    SELECT indexname, indexdef FROM pg_indexes i
    WHERE tablename IN ('webhook_messages', 'webhook_deliveries', 'webhook_attempts')
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
    """
FOREIGN_KEYS = """
    SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def
    FROM pg_constraint
    WHERE contype = 'f'
      AND conrelid::regclass::text IN ('webhook_messages', 'webhook_deliveries',
                                       'webhook_attempts')
    """

# Message g of n (0-based): how many days old it is, oldest first, in three thirds.
AGE_DAYS = """CASE (3 * g) / %(rows)s
        WHEN 0 THEN 179 - 88.0 * ((3 * g) %% %(rows)s) / %(rows)s
        WHEN 1 THEN 89 - 58.0 * ((3 * g) %% %(rows)s) / %(rows)s
        ELSE 29 - 29.0 * ((3 * g) %% %(rows)s) / %(rows)s END"""
SEED_ID = "lpad(g::text, 10, '0')"
SEED_CHUNK = [
    f"""INSERT INTO webhook_messages (id, app_id, endpoint_id, event_type, payload, body,
                                     request_hash, created_at)
        SELECT 'msg_seed_' || {SEED_ID}, '{APP}', '{ENDPOINT}', 'order.paid',
               jsonb_build_object('order', g, 'amount', 1999, 'currency', 'EUR',
                                  'customer', 'cus_' || md5(g::text)),
               '{{"type":"order.paid","data":{{"order":' || g || ',"amount":1999,'
                   || '"currency":"EUR","customer":"cus_' || md5(g::text) || '"}}}}',
               md5(g::text),
               now() - make_interval(secs => ({AGE_DAYS}) * 86400)
        FROM generate_series(%(lo)s, %(hi)s - 1) g""",
    f"""INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, attempt_count,
                                       schedule_position, created_at, delivered_at)
        SELECT 'dlv_seed_' || {SEED_ID}, 'msg_seed_' || {SEED_ID}, '{ENDPOINT}', 'delivered',
               1, 1, t, t
        FROM generate_series(%(lo)s, %(hi)s - 1) g,
             LATERAL (SELECT now() - make_interval(secs => ({AGE_DAYS}) * 86400) AS t) at""",
    f"""INSERT INTO webhook_attempts (id, delivery_id, number, started_at, duration_ms,
                                     status_code, response_excerpt)
        SELECT g + 1, 'dlv_seed_' || {SEED_ID}, 1,
               now() - make_interval(secs => ({AGE_DAYS}) * 86400), 42, 200,
               '{{"received": true, "id": "' || md5(g::text) || '"}}'
        FROM generate_series(%(lo)s, %(hi)s - 1) g""",
]
# What POST …/messages writes for a message to one endpoint: the message and its delivery.
ACCEPT = f"""
    WITH message AS (
        INSERT INTO webhook_messages (id, app_id, endpoint_id, event_type, payload, body,
                                      request_hash)
        VALUES (%(id)s, '{APP}', '{ENDPOINT}', 'order.paid', '{{"n": 2}}', '{{}}', 'h')
        RETURNING id)
    INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, next_attempt_at)
    SELECT 'dlv_' || substr(id, 5), id, '{ENDPOINT}', 'pending', now() FROM message
    """
LOCK_WAITERS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'
    """


def seed(url: str, rows: int, chunk: int) -> None:
    """Fill the database with ``rows`` finished messages (see the module docstring)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO webhook_apps (id, name) VALUES ('{APP}', 'bench')")
        conn.execute(
            "INSERT INTO webhook_endpoints (id, app_id, url, secret)"
            f" VALUES ('{ENDPOINT}', '{APP}', 'http://127.0.0.1:9/',"
            " 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')"
        )
        indexes = conn.execute(SECONDARY_INDEXES).fetchall()
        keys = conn.execute(FOREIGN_KEYS).fetchall()
        for table, name, _ in keys:
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        started = time.perf_counter()
        for lo in range(0, rows, chunk):
            for statement in SEED_CHUNK:
                conn.execute(statement, {"lo": lo, "hi": min(rows, lo + chunk), "rows": rows})
            print(
                f"  seeded {min(rows, lo + chunk):,} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        conn.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            conn.execute(definition)
        for table, name, definition in keys:
            conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        print(f"  indexes and foreign keys ({time.perf_counter() - started:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE webhook_messages, webhook_deliveries, webhook_attempts")


# autovacuum's defaults (PostgreSQL 15): when a table is due, and how fast it is vacuumed.
NAPTIME = 60.0
DUE_FOR_VACUUM = """
    SELECT s.n_dead_tup > 50 + 0.2 * c.reltuples AS vacuum,
           s.n_mod_since_analyze > 50 + 0.1 * c.reltuples AS analyze
    FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.relname = %s
    """


def standing_in_for_autovacuum(
    url: str, table: str, stop: threading.Event, runs: list[tuple[str, float, float]]
) -> None:
    """One autovacuum worker's job on ``table``: (what ran, started s, seconds) to ``runs``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET vacuum_cost_delay = '2ms'")
        conn.execute("SET vacuum_cost_limit = 200")
        began = time.perf_counter()
        while not stop.wait(NAPTIME):
            vacuum, analyze = conn.execute(DUE_FOR_VACUUM, (table,)).fetchone()
            for due, command in ((vacuum, "VACUUM"), (analyze, "ANALYZE")):
                if due:
                    started = time.perf_counter()
                    try:
                        conn.execute(f"{command} {table}")
                    except psycopg.errors.QueryCanceled:
                        command += " (cut at the end)"
                    runs.append(
                        (f"{command} {table}", started - began, time.perf_counter() - started)
                    )


def sql_writer(url: str) -> Callable[[], None]:
    conn = psycopg.connect(url, autocommit=True)

    def accept() -> None:
        conn.execute(ACCEPT, {"id": f"msg_{uuid.uuid4().hex}"})

    return accept


def api_writer(client) -> Callable[[], None]:
    body = {"endpoint_id": ENDPOINT, "event_type": "order.paid", "payload": {"n": 2}}

    def accept() -> None:
        response = client.post(f"/v1/apps/{APP}/messages", json=body, headers=AUTH)
        assert response.status_code == 202, response.text[:300]

    return accept


def accepting(accept: Callable[[], None], stop: threading.Event, latencies: list[float]):
    while not stop.is_set():
        started = time.perf_counter()
        accept()
        latencies.append(time.perf_counter() - started)


def watching_locks(url: str, stop: threading.Event, samples: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.wait(0.1):
            samples.append(conn.execute(LOCK_WAITERS).fetchone()[0])


TABLES = ("webhook_messages", "webhook_deliveries", "webhook_attempts")
CANCEL_VACUUMS = """
    SELECT pg_cancel_backend(pid) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND (query LIKE 'VACUUM %' OR query LIKE 'ANALYZE %')
    """


def phase(
    url: str, accept: Callable[[], None], work, vacuum: list | None = None
) -> tuple[float, list, list, object]:
    """Run ``work`` beside the accept path (and the stand-in autovacuum when ``vacuum``
    collects its runs)."""
    stop, latencies, waiters = threading.Event(), [], []
    threads = [
        threading.Thread(target=accepting, args=(accept, stop, latencies)),
        threading.Thread(target=watching_locks, args=(url, stop, waiters)),
    ]
    if vacuum is not None:
        threads += [
            threading.Thread(target=standing_in_for_autovacuum, args=(url, t, stop, vacuum))
            for t in TABLES
        ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        result = work()
        elapsed = time.perf_counter() - started
    finally:
        stop.set()  # also on Ctrl-C, so the process can end
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(CANCEL_VACUUMS)
        for thread in threads:
            thread.join()
    return elapsed, sorted(latencies), waiters, result


def purge_backlog(settings) -> dict[str, float]:
    """Retention runs back to back until one finds nothing: the totals, the longest batch."""
    total = {"deleted": 0, "expunged": 0, "longest_batch_ms": 0.0, "runs": 0}
    while True:
        counts = purge(settings)
        total["runs"] += 1
        total["deleted"] += counts["deleted"]
        total["expunged"] += counts["expunged"]
        total["longest_batch_ms"] = max(total["longest_batch_ms"], counts["longest_batch_ms"])
        print(f"  run {total['runs']}: {counts}", flush=True)
        if not counts["deleted"] and not counts["expunged"]:
            return total


def describe(name: str, seconds: float, latencies: list[float], waiters: list[int]) -> str:
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    waited = sum(1 for n in waiters if n)
    return (
        f"{name:18} {len(latencies) / seconds:7.0f} /s"
        f"  p50 {statistics.median(latencies) * 1000:6.2f} ms  p99 {p99:6.2f} ms"
        f"  max {latencies[-1] * 1000:7.1f} ms"
        f"  lock waits seen in {waited}/{len(waiters)} samples"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--accept", choices=("api", "sql"), default="api")
    args = parser.parse_args()
    namespace = f"benchret{uuid.uuid4().hex[:6]}"
    base = {
        "REDIS_URL": base_redis_url(),
        "JENGA_NAMESPACE": namespace,
        "CONFIG_WAIT_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "RETENTION_BATCH": str(args.batch),
    }
    with ExitStack() as stack, fresh_database() as url:
        started = time.perf_counter()
        seed(url, args.rows, args.chunk)
        seed_s = time.perf_counter() - started
        print(f"seeded in {seed_s:.0f} s", flush=True)
        settings = load_settings({**base, "DATABASE_URL": url}, wait_seconds=0)
        set_settings(settings)
        if args.accept == "api":
            accept = api_writer(start_api(stack, stack_env(base, url)))
        else:
            accept = sql_writer(url)
        for _ in range(20):
            accept()  # the first requests open connections: not what is measured
        with psycopg.connect(url) as conn:
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0] == "on"
        vacuums = None if autovacuum else []
        base_s, base_lat, base_waits, _ = phase(
            url, accept, lambda: time.sleep(args.baseline_seconds)
        )
        purge_s, purge_lat, purge_waits, counts = phase(
            url, accept, lambda: purge_backlog(settings), vacuums
        )
        set_settings(None)
    keys = redis.Redis.from_url(base_redis_url())
    for key in keys.scan_iter(f"*{namespace}*", count=1000):
        keys.delete(key)
    purged = counts["deleted"] + counts["expunged"]
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; {args.rows:,} finished"
        f" messages seeded in {seed_s:.0f} s (1/3 to delete, 1/3 to expunge),"
        f" batches of {args.batch}, accept path: {args.accept}"
    )
    print(
        f"purge: {counts['deleted']:,} deleted + {counts['expunged']:,} expunged in"
        f" {purge_s:.1f} s ({purged / purge_s:,.0f} messages/s, {counts['runs']} runs);"
        f" longest batch {counts['longest_batch_ms']} ms"
    )
    if vacuums is None:
        print("autovacuum: the server's own")
    else:
        ran = ", ".join(f"{what} at {at:.0f} s for {took:.0f} s" for what, at, took in vacuums)
        print(f"autovacuum stood in for (from the purge's start): {ran or 'none due'}")
    print(describe("accept, no purge", base_s, base_lat, base_waits))
    print(describe("accept, purging", purge_s, purge_lat, purge_waits))


if __name__ == "__main__":
    main()
