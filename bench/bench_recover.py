"""Benchmark: recover of many failed deliveries, and what it costs live traffic.

    PYTHONPATH=. .venv/bin/python -m bench.bench_recover [--failed 100000]
        [--delivered 200000] [--rate 500] [--baseline-seconds 15]

A fresh database (Alembic head) is filled by PostgreSQL itself (``INSERT ... SELECT
generate_series``) with two endpoints of one application, each with ``--failed``
failed deliveries spread over the last 20 days (and ``--delivered`` delivered ones
beside them), and a third endpoint for live traffic. The API runs as a real process;
a client thread posts messages to the live endpoint back to back, and a dispatcher
thread runs the dispatcher's claim (``CLAIM_DUE``, a batch of 500) every 0.2 s, then
marks what was enqueued delivered (standing in for the workers: no receiver is called).
Three phases, in the same run:

1. **baseline**: live traffic only, ``--baseline-seconds``;
2. **paced**: ``POST …/endpoints/{ep}/recover`` of the first endpoint, advanced by
   :func:`worker.jobs.tasks.advance_all` every second (as beat's tick does) at
   ``RECOVER_RATE_PER_SECOND=--rate``, until the job is done;
3. **unbounded**: the same for the second endpoint at the highest rate (a million a
   second: the statements' own speed), ticks back to back.

Reported per phase: the time to re-queue everything (job created to done), the API's
``POST`` p50/p99, the dispatcher claim's p50/p99, and the job's pace read back from
``next_attempt_at``: the most deliveries due in any one second, and the seconds from
the first due to the last. (A paced job finishes ``2 s x rate`` deliveries before its
last is due: it fills the schedule that far ahead.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from psycopg.rows import dict_row

from common.config import load_settings, set_settings
from tests.support.servers import base_redis_url
from tests.support.stack import AUTH, fresh_database, stack_env, start_api
from worker.delivery.queries import CLAIM_DUE
from worker.jobs.queries import BATCH, PICK
from worker.jobs.tasks import advance_all

FILL = """
INSERT INTO webhook_apps (id, name) VALUES ('app_bench', 'bench');
INSERT INTO webhook_endpoints (id, app_id, url, secret)
SELECT 'ep_' || e, 'app_bench', 'http://127.0.0.1:9/' || e, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
FROM unnest(ARRAY['live', 'paced', 'fast']) e;
INSERT INTO webhook_messages (id, app_id, event_type, payload, body, request_hash, created_at)
SELECT 'msg_' || e || '_' || m, 'app_bench', 'bench.event', '{"n": 1}',
       '{"type":"bench.event","data":{"n":1}}', md5(e || m),
       now() - make_interval(secs => (%(rows)s - m) * 1728000.0 / %(rows)s)
FROM generate_series(0, %(rows)s - 1) m, unnest(ARRAY['paced', 'fast']) e;
INSERT INTO webhook_deliveries (id, message_id, endpoint_id, status, attempt_count,
                                schedule_position, last_error, created_at, delivered_at)
SELECT 'dlv_' || substr(m.id, 5), m.id, 'ep_' || split_part(m.id, '_', 2),
       CASE WHEN n < %(failed)s THEN 'failed' ELSE 'delivered' END,
       CASE WHEN n < %(failed)s THEN 8 ELSE 1 END,
       CASE WHEN n < %(failed)s THEN 8 ELSE 1 END,
       CASE WHEN n < %(failed)s THEN 'HTTP 500' END,
       m.created_at,
       CASE WHEN n >= %(failed)s THEN m.created_at END
FROM webhook_messages m,
     LATERAL (SELECT (split_part(m.id, '_', 3)::bigint * 7919) %% %(rows)s AS n) spread
WHERE m.app_id = 'app_bench';
"""
# Failed and delivered deliveries interleaved in time (n is m scrambled), as after an
# outage that came and went.


def poster(client, stop: threading.Event, latencies: list[float]) -> None:
    body = {"endpoint_id": "ep_live", "event_type": "bench.event", "payload": {"n": 2}}
    while not stop.is_set():
        started = time.perf_counter()
        response = client.post("/v1/apps/app_bench/messages", json=body, headers=AUTH)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 202, response.text[:300]


# What the workers would do with what was enqueued (by the dispatcher or the API): deliver
# it. Without them every dispatched delivery would stay pending, and the dispatcher's scan
# would wade through more of them at each run than any real fleet leaves behind. (Their
# next_attempt_at stays: it is what the job's pace is read back from.)
DELIVER_DISPATCHED = """
    UPDATE webhook_deliveries
    SET status = 'delivered', delivered_at = now(), dispatched_at = NULL
    WHERE status = 'pending' AND next_attempt_at <= now() AND dispatched_at IS NOT NULL
    """


def dispatcher(url: str, stop: threading.Event, latencies: list[float]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            started = time.perf_counter()
            conn.execute(CLAIM_DUE, {"redispatch": 300, "batch": 500, "lookahead": 1.5}).fetchall()
            latencies.append(time.perf_counter() - started)
            conn.execute(DELIVER_DISPATCHED)
            if stop.wait(0.2):
                return


def recover(client, conn, endpoint: str, settings, tick_every: float) -> tuple[float, dict]:
    """Start a recover of ``endpoint`` and tick until it is done: seconds, and the job."""
    since = (datetime.now(UTC) - timedelta(days=21)).isoformat()
    started = time.perf_counter()
    answered = client.post(
        f"/v1/apps/app_bench/endpoints/{endpoint}/recover", json={"since": since}, headers=AUTH
    )
    assert answered.status_code == 202, answered.text
    job_id = answered.json()["id"]
    while True:
        tick = time.perf_counter()
        advance_all(settings)
        job = conn.execute("SELECT * FROM webhook_jobs WHERE id = %s", (job_id,)).fetchone()
        if job["status"] in ("done", "failed"):
            return time.perf_counter() - started, job
        time.sleep(max(0.0, tick_every - (time.perf_counter() - tick)))


def pace(conn, endpoint: str) -> tuple[int, float]:
    """The most of the endpoint's re-queued deliveries due in any one second, and the
    seconds from the first due to the last."""
    busiest = conn.execute(
        """SELECT coalesce(max(n), 0) AS n FROM (
               SELECT count(*) OVER (ORDER BY next_attempt_at
                   RANGE BETWEEN CURRENT ROW AND interval '999999 microseconds' FOLLOWING) AS n
               FROM webhook_deliveries
               WHERE endpoint_id = %s AND next_attempt_at IS NOT NULL) w""",
        (endpoint,),
    ).fetchone()["n"]
    span = conn.execute(
        "SELECT extract(epoch FROM max(next_attempt_at) - min(next_attempt_at)) AS s"
        " FROM webhook_deliveries WHERE endpoint_id = %s AND next_attempt_at IS NOT NULL",
        (endpoint,),
    ).fetchone()["s"]
    return busiest, float(span or 0)


def pick_plan(conn) -> str:
    """The batch's read (PICK) of the first endpoint, EXPLAIN ANALYZE: the scans, and ms."""
    params = {
        "endpoint": "ep_paced",
        "after_at": datetime.now(UTC) - timedelta(days=21),
        "after_id": "",
        "until": datetime.now(UTC),
        "age": 29 * 86400,
        "event_type": None,
        "limit": BATCH,
    }
    plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {PICK}", params).fetchone()
    root = plan["QUERY PLAN"][0]
    scans: list[str] = []

    def walk(node):
        if "Scan" in node["Node Type"]:
            scans.append(f"{node['Node Type']} {node.get('Index Name', node.get('Relation Name'))}")
        for child in node.get("Plans", []):
            walk(child)

    walk(root["Plan"])
    return f"{root['Execution Time']:.1f} ms: {', '.join(scans)}"


def phase(url: str, client, work) -> tuple[float, list[float], list[float], object]:
    stop, posts, claims = threading.Event(), [], []
    threads = [
        threading.Thread(target=poster, args=(client, stop, posts)),
        threading.Thread(target=dispatcher, args=(url, stop, claims)),
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    try:
        result = work()
    finally:
        stop.set()  # also on Ctrl-C, so the process can end
        for thread in threads:
            thread.join()
    return time.perf_counter() - started, sorted(posts), sorted(claims), result


def quantiles(latencies: list[float]) -> str:
    if not latencies:
        return "-"
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return f"{statistics.median(latencies) * 1000:7.2f} / {p99:7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failed", type=int, default=100_000)
    parser.add_argument("--delivered", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--baseline-seconds", type=float, default=15.0)
    args = parser.parse_args()
    namespace = f"benchrec{uuid.uuid4().hex[:6]}"
    base = {
        "REDIS_URL": base_redis_url(),
        "JENGA_NAMESPACE": namespace,
        "CONFIG_WAIT_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    results = {}
    with ExitStack() as stack, fresh_database() as url:
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            rows = {"rows": args.failed + args.delivered, "failed": args.failed}
            for statement in FILL.split(";\n"):
                if statement.strip():
                    conn.execute(statement, rows)
            conn.execute("VACUUM ANALYZE")
        print(f"filled in {time.perf_counter() - started:.0f} s", flush=True)
        settings = load_settings({**base, "DATABASE_URL": url}, wait_seconds=0)
        set_settings(settings)
        client = start_api(stack, stack_env(base, url, LOG_LEVEL="WARNING"))
        conn = stack.enter_context(psycopg.connect(url, autocommit=True, row_factory=dict_row))
        print(f"a batch's read of {BATCH}: {pick_plan(conn)}", flush=True)
        paced = settings.model_copy(update={"recover_rate_per_second": args.rate})
        unbounded = settings.model_copy(update={"recover_rate_per_second": 1_000_000})
        work = {
            "baseline": lambda: time.sleep(args.baseline_seconds),
            f"paced ({args.rate:g}/s)": lambda: recover(client, conn, "ep_paced", paced, 1.0),
            "unbounded": lambda: recover(client, conn, "ep_fast", unbounded, 0.0),
        }
        for name, job in work.items():
            results[name] = phase(url, client, job)
            print(f"{name}: {results[name][0]:.1f} s", flush=True)
        paces = {ep: pace(conn, ep) for ep in ("ep_paced", "ep_fast")}
        set_settings(None)
    keys = redis.Redis.from_url(base_redis_url())
    for key in keys.scan_iter(f"*{namespace}*", count=1000):
        keys.delete(key)
    print(
        f"machine: {os.cpu_count()} cores; {args.failed} failed (+{args.delivered} delivered)"
        " deliveries per recovered endpoint; API POST and dispatcher claim in ms"
    )
    print(
        f"{'phase':18} {'re-queue s':>10} {'per s':>8} {'done':>7}"
        f" {'POST p50 / p99':>17} {'posts':>6} {'claim p50 / p99':>17} {'due/s max':>9}"
        f" {'due over s':>10}"
    )
    for (name, (_, posts, claims, recovered)), endpoint in zip(
        results.items(), (None, "ep_paced", "ep_fast"), strict=True
    ):
        requeue, done, due = " " * 19, " " * 7, ""
        if recovered:
            busiest, span = paces[endpoint]
            due = f"{busiest:9d} {span:10.1f}"
            seconds, job = recovered
            requeue = f"{seconds:10.1f} {job['done_count'] / seconds:8.0f}"
            done = f"{job['done_count']:7d}"
        print(
            f"{name:18} {requeue} {done} {quantiles(posts):>17} {len(posts):6d}"
            f" {quantiles(claims):>17} {due}"
        )


if __name__ == "__main__":
    main()
