"""Benchmark: what the retention purge costs the accept path, and how long it holds rows.

    .venv/bin/python -m bench.bench_retention [--rows 200000] [--batch 500]

A fresh database gets ``--rows`` finished messages (one attempt each): a third older
than ATTEMPT_RETENTION_DAYS (deleted), a third older than MESSAGE_RETENTION_DAYS
(expunged), a third recent (kept). A writer thread inserts a new message and commits,
as ``POST …/messages`` does, as fast as it can, first with no purge running (the
baseline), then while ``worker.tasks.retention.purge`` runs to completion. Reported:
rows purged per second, the longest batch (what one statement held its rows for),
and the writer's commits per second and p50/p99 latency in both phases.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid

import psycopg

from common.config import load_settings, set_settings
from tests.support.servers import base_redis_url
from tests.support.stack import fresh_database
from worker.tasks.retention import purge

SEED = """
    WITH messages AS (
        INSERT INTO webhook_messages (id, endpoint_id, event_type, payload, body, request_hash,
                                      created_at)
        SELECT 'msg_seed_' || g, %(endpoint)s, 'bench.retention', '{"n": 1}', '{"n":1}', 'h',
               now() - make_interval(days => CASE g %% 3 WHEN 0 THEN 120
                                                         WHEN 1 THEN 45 ELSE 1 END)
        FROM generate_series(1, %(rows)s) AS g
        RETURNING id, endpoint_id, created_at)
    INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, created_at,
                                    delivered_at, attempt_count)
    SELECT 'dlv_' || substr(id, 5), id, endpoint_id, 'delivered', created_at, created_at, 1
    FROM messages
    """
SEED_ATTEMPTS = """
    INSERT INTO webhook_attempts (delivery_id, number, started_at, duration_ms, status_code,
                                  response_excerpt)
    SELECT id, 1, created_at, 5, 200, 'ok' FROM webhook_deliveries
    WHERE id LIKE 'dlv_seed_%%'
    """
# What the API writes for a message to one endpoint: the message and its delivery.
ACCEPT = """
    WITH message AS (
        INSERT INTO webhook_messages (id, endpoint_id, event_type, payload, body, request_hash)
        VALUES (%(id)s, %(endpoint)s, 'bench.accept', '{}', '{}', 'h')
        RETURNING id)
    INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, next_attempt_at)
    SELECT 'dlv_' || substr(id, 5), id, %(endpoint)s, 'pending', now() FROM message
    """


def writer(url: str, endpoint: str, stop: threading.Event, latencies: list[float]) -> None:
    with psycopg.connect(url) as conn:
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute(ACCEPT, {"id": f"msg_{uuid.uuid4().hex}", "endpoint": endpoint})
            conn.commit()
            latencies.append(time.perf_counter() - started)


def phase(url: str, endpoint: str, work) -> tuple[float, list[float], object]:
    stop, latencies = threading.Event(), []
    thread = threading.Thread(target=writer, args=(url, endpoint, stop, latencies))
    started = time.perf_counter()
    thread.start()
    result = work()
    stop.set()
    thread.join()
    return time.perf_counter() - started, sorted(latencies), result


def describe(name: str, seconds: float, latencies: list[float]) -> str:
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return (
        f"{name:18} {len(latencies) / seconds:7.0f} commits/s"
        f"  p50 {statistics.median(latencies) * 1000:6.2f} ms  p99 {p99:6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with fresh_database() as url:
        settings = load_settings(
            {
                "DATABASE_URL": url,
                "REDIS_URL": base_redis_url(),
                "JENGA_NAMESPACE": f"benchret{uuid.uuid4().hex[:6]}",
                "RETENTION_BATCH": str(args.batch),
            },
            wait_seconds=0,
        )
        set_settings(settings)
        endpoint = f"ep_{uuid.uuid4().hex}"
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO webhook_endpoints (id, url, secret)"
                " VALUES (%s, 'http://x.test/', 'x')",
                (endpoint,),
            )
            conn.execute(SEED, {"endpoint": endpoint, "rows": args.rows})
            conn.execute(SEED_ATTEMPTS)
            conn.commit()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE webhook_messages")
            conn.execute("VACUUM ANALYZE webhook_deliveries")
            conn.execute("VACUUM ANALYZE webhook_attempts")
        base_s, base_lat, _ = phase(url, endpoint, lambda: time.sleep(args.baseline_seconds))
        purge_s, purge_lat, counts = phase(url, endpoint, lambda: purge(settings, run_seconds=3600))
    purged = counts["deleted"] + counts["expunged"]
    print(
        f"machine: {os.cpu_count()} cores; {args.rows} finished messages seeded"
        f" (1/3 to delete, 1/3 to expunge), batches of {args.batch}"
    )
    print(
        f"purge: {counts['deleted']} deleted + {counts['expunged']} expunged in {purge_s:.1f} s"
        f" ({purged / purge_s:.0f} messages/s); longest batch {counts['longest_batch_ms']} ms"
    )
    print(describe("accept, no purge", base_s, base_lat))
    print(describe("accept, purging", purge_s, purge_lat))


if __name__ == "__main__":
    main()
