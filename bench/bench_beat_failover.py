"""Beat failover: the active beat is SIGKILLed -> a standby schedules; every beat is
killed -> alarm ``beat`` (in Redis, and at a Slack-like receiver); beats return ->
the alarm clears.

Runs one ops worker (the watcher, on the alarms queue) and two beats as real
processes against the shared Redis and PostgreSQL, and polls Redis every 10 ms.
Each round: SIGKILL the active beat (time until the standby holds the lease and
has sent a watchdog), SIGKILL the standby as well (time until alarm ``beat`` is
set and Slack is told), start two beats again (time until the alarm clears).
Baseline, in the same run: the active beat stopped cleanly (SIGTERM: it releases
the lease) -> the standby schedules.

    .venv/bin/python -m bench.bench_beat_failover --kills 5

Goals (issue 14): a standby schedules within 30 s of the active beat's death
(bound: BEAT_LOCK_TTL_SECONDS + BEAT_LOCK_RENEW_SECONDS); the alarm within three
watchdog intervals plus the grace and one heartbeat.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid

import redis

from common.alarms.store import AlarmStore
from common.config import Settings
from common.health.beat_store import BeatStore
from common.redis.keys import RedisKeys
from common.redis.scripts import redis_time
from tests.support.fake_slack import FakeSlack
from tests.support.servers import (
    JengaProcess,
    base_database_url,
    base_redis_url,
    jenga_env,
    wait_for,
)


class Fleet:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.beats: dict[str, JengaProcess] = {}
        self.started = 0

    def start_beat(self) -> str:
        self.started += 1
        name = f"beat{self.started}"
        env = jenga_env(**{**self.env, "BEAT_NAME": name})
        self.beats[name] = JengaProcess.celery("beat", env=env, name=name).start()
        return name

    def stop(self) -> None:
        for beat in self.beats.values():
            beat.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=5)
    defaults = Settings.model_fields
    for flag, name in (
        ("--ttl", "beat_lock_ttl_seconds"),
        ("--renew", "beat_lock_renew_seconds"),
        ("--interval", "watchdog_interval_seconds"),
        ("--heartbeat", "heartbeat_interval_seconds"),
    ):
        parser.add_argument(flag, type=float, default=defaults[name].default, help=name.upper())
    args = parser.parse_args()

    namespace = f"bench{uuid.uuid4().hex[:8]}"
    redis_url = base_redis_url()
    slack = FakeSlack().start()
    env = {
        "DATABASE_URL": base_database_url(),
        "REDIS_URL": redis_url,
        "JENGA_NAMESPACE": namespace,
        "SLACK_WEBHOOK_URL": slack.url,
        "WATCHDOG_INTERVAL_SECONDS": str(args.interval),
        "HEARTBEAT_INTERVAL_SECONDS": str(args.heartbeat),
        "BEAT_LOCK_TTL_SECONDS": str(args.ttl),
        "BEAT_LOCK_RENEW_SECONDS": str(args.renew),
        "HEARTBEAT_DIR": tempfile.mkdtemp(prefix="jenga-bench-hb-"),
        "CHECK_TIMEOUT_SECONDS": "1",
    }
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    beats_store, alarms = BeatStore(client, namespace), AlarmStore(client, namespace)
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
    fleet = Fleet(env)

    def active() -> str | None:
        record = beats_store.read()
        return record.active.split(":", 1)[0] if record and record.active else None

    def scheduled_by(name: str, since: float) -> bool:
        """``name`` holds the lease and has sent a watchdog after ``since`` (Redis time)."""
        record = beats_store.read()
        return bool(
            record and record.active.startswith(name + ":") and (record.watchdogs_at or 0) > since
        )

    def takeover(sig: int) -> float:
        first = wait_for(active, 120, interval=0.01, what="an active beat")
        other = next(n for n, b in fleet.beats.items() if n != first and b.alive())
        wait_for(lambda: "beat.standby" in fleet.beats[other].output(), 60, what="standby")
        # At a random point of the renewal cycle: killed right after the standby's first
        # claim, the two beats' phases would always be the same.
        time.sleep(random.uniform(0, args.renew))
        since = redis_time(client.time())
        os.killpg(fleet.beats[first].proc.pid, sig)
        killed = time.monotonic()
        wait_for(lambda: scheduled_by(other, since), 120, interval=0.01, what="takeover")
        took = time.monotonic() - killed
        fleet.beats[first].stop()
        return took

    rows, baselines = [], []
    try:
        worker.start()
        worker.wait_for_output("ready.", timeout=60)
        fleet.start_beat()
        fleet.start_beat()
        for round_number in range(args.kills):
            baselines.append(takeover(signal.SIGTERM))
            fleet.start_beat()
            killed_over = takeover(signal.SIGKILL)
            # The last beat dies too: nothing schedules any more.
            last = next(n for n, b in fleet.beats.items() if b.alive())
            messages = len(slack.messages)
            time.sleep(random.uniform(0, args.interval))  # anywhere between two sends
            fleet.beats[last].kill()
            died = time.monotonic()
            last_sent = beats_store.read().watchdogs_at
            wait_for(lambda: alarms.is_open("beat"), 600, interval=0.01, what="alarm set")
            stored = time.monotonic() - died
            details = client.hget(RedisKeys(namespace).alarm("beat"), "details")
            print(
                f"  alarm set: last watchdogs sent {redis_time(client.time()) - last_sent:.2f}s"
                f" before; {details}"
            )
            wait_for(lambda n=messages: len(slack.messages) > n, 60, interval=0.01, what="told")
            told = time.monotonic() - died
            fleet.beats[last].stop()
            fleet.start_beat()
            back = time.monotonic()
            fleet.start_beat()
            wait_for(lambda: not alarms.is_open("beat"), 600, interval=0.01, what="cleared")
            cleared = time.monotonic() - back
            rows.append((killed_over, stored, told, cleared))
            print(f"round {round_number + 1}: {rows[-1]}, clean stop {baselines[-1]:.2f}")
    finally:
        fleet.stop()
        worker.stop()
        slack.stop()
        keys = list(client.scan_iter(f"*{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()

    sets = sum(1 for t in slack.texts() if "ALARM SET" in t and " beat - " in t)
    clears = sum(1 for t in slack.texts() if "ALARM CLEARED" in t and " beat - " in t)
    print(
        f"machine: {os.cpu_count()} cores; BEAT_LOCK_TTL_SECONDS={args.ttl}, "
        f"BEAT_LOCK_RENEW_SECONDS={args.renew}, WATCHDOG_INTERVAL_SECONDS={args.interval}, "
        f"HEARTBEAT_INTERVAL_SECONDS={args.heartbeat}, kills={args.kills}"
    )
    names = [
        "SIGKILL active -> standby sends",
        "all beats dead -> alarm in Redis",
        "all beats dead -> Slack told",
        "beats back -> alarm cleared",
    ]
    for index, name in enumerate(names):
        values = [row[index] for row in rows]
        print(f"{name:34} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s")
    print(
        f"{'baseline: SIGTERM -> standby sends':34} median {statistics.median(baselines):6.2f} s"
        f"   max {max(baselines):6.2f} s"
    )
    print(f"Slack told: {sets} sets, {clears} clears for {args.kills} outages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
