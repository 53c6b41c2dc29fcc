"""Alarm detection latency: a dependency dies -> alarm set (in Redis, and at
the Slack-like receiver); it comes back -> alarm cleared.

Runs a real worker and beat against a throwaway PostgreSQL, kills it and
restarts it ``--rounds`` times, and polls Redis every 10 ms. Baseline, in the
same run: a tight probe loop (``check_postgres`` every 10 ms in this process),
the fastest anyone could notice with the same check.

    .venv/bin/python -m bench.bench_alarms --interval 1 --rounds 3

Goal: detection <= interval + 1 s; clear ~ ALARM_CLEAR_AFTER intervals.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid

import redis

from common.alarms.store import AlarmStore
from common.config import load_settings
from common.connections.database import make_engine
from common.connections.probes import check_postgres
from tests.support.fake_slack import FakeSlack
from tests.support.servers import JengaProcess, PostgresServer, base_redis_url, jenga_env, wait_for


def probe_detect(engine, timeout: float, want_ok: bool, started: float) -> float:
    """Baseline: seconds until a 10 ms probe loop sees the wanted state."""
    while check_postgres(engine, timeout).ok != want_ok:
        time.sleep(0.01)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--interval", type=float, default=1.0, help="WATCHDOG_INTERVAL_SECONDS")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clear-after", type=int, default=3)
    args = parser.parse_args()

    namespace = f"bench{uuid.uuid4().hex[:8]}"
    redis_url = base_redis_url()
    pg = PostgresServer().start()
    slack = FakeSlack().start()
    env = {
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis_url,
        "JENGA_NAMESPACE": namespace,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(args.interval),
        "ALARM_CLEAR_AFTER": str(args.clear_after),
        "CHECK_TIMEOUT_SECONDS": "0.5",
    }
    settings = load_settings({**env, "CONFIG_WAIT_SECONDS": "0"}, wait_seconds=0)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = AlarmStore(client, namespace)
    engine = make_engine(settings, pool_size=1)
    folder = tempfile.mkdtemp(prefix="jenga-bench-")
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "-Q",
        f"{namespace}.alarms",
        "--without-mingle",
        "--without-gossip",
        env=jenga_env(**env),
        name="worker",
    )
    beat = JengaProcess.celery(
        "beat", "-s", f"{folder}/schedule", env=jenga_env(**env), name="beat"
    )
    rows = []
    try:
        worker.start()
        worker.wait_for_output("ready.", timeout=60)
        beat.start()
        time.sleep(3 * args.interval)  # let the watchdogs settle on "healthy"
        for _ in range(args.rounds):
            messages = len(slack.messages)
            pg.stop()
            died = time.monotonic()
            baseline_set = probe_detect(engine, 0.5, False, died)
            wait_for(lambda: store.is_open("postgres"), 60, interval=0.01, what="alarm set")
            stored = time.monotonic() - died
            wait_for(
                lambda n=messages: len(slack.messages) > n, 60, interval=0.01, what="slack set"
            )
            told = time.monotonic() - died
            pg.start()
            back = time.monotonic()
            baseline_clear = probe_detect(engine, 0.5, True, back)
            wait_for(lambda: not store.is_open("postgres"), 60, interval=0.01, what="alarm clear")
            cleared = time.monotonic() - back
            wait_for(
                lambda n=messages: len(slack.messages) > n + 1,
                60,
                interval=0.01,
                what="slack clear",
            )
            rows.append((baseline_set, stored, told, baseline_clear, cleared))
            time.sleep(args.interval)
    finally:
        beat.stop()
        worker.stop()
        slack.stop()
        pg.close()
        engine.dispose()
        keys = list(client.scan_iter(f"*{namespace}*"))
        if keys:
            client.delete(*keys)

    print(
        f"machine: {os.cpu_count()} cores; WATCHDOG_INTERVAL_SECONDS={args.interval}, "
        f"ALARM_CLEAR_AFTER={args.clear_after}, rounds={args.rounds}"
    )
    names = [
        "baseline probe sees it down",
        "alarm set in Redis",
        "Slack told (set)",
        "baseline probe sees it up",
        "alarm cleared in Redis",
    ]
    for index, name in enumerate(names):
        values = [row[index] for row in rows]
        print(f"{name:30} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
