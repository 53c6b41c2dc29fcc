"""Level 1-2 in the worker: it boots and stays up whatever is down, pauses the
deliveries queue while PostgreSQL is away (tasks wait in the broker), retries a
task the outage caught mid-run, keeps other queues flowing, and reconnects to
a broker that was down at boot with jittered backoff bounded by the cap."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid

import psycopg
import pytest
import redis
from celery import Celery

from common.config import load_settings
from common.health.heartbeat import heartbeat_key, heartbeat_path
from tests.support.brokers import waiting
from tests.support.servers import ROOT, JengaProcess, RedisServer, jenga_env, wait_for
from worker.celeryconfig import celery_config, queue_names

pytestmark = pytest.mark.slow


def sender(env: dict[str, str]) -> Celery:
    settings = load_settings(env, wait_seconds=0)
    app = Celery("jenga-test-sender", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def worker_health(env: dict[str, str], hostname: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "common.ops.cli",
            "worker",
            "health",
            "--hostname",
            hostname,
            *extra,
        ],
        env=jenga_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def start_worker(
    env: dict[str, str], hostname: str, queues: str, *extra: str, pool: str = "threads"
) -> JengaProcess:
    concurrency = "2" if pool == "threads" else "1"
    return JengaProcess.celery(
        "worker",
        "-P",
        pool,
        "-c",
        concurrency,
        "-n",
        hostname,
        "-Q",
        queues,
        "-I",
        "tests.support.outage_tasks",
        "--without-mingle",
        "--without-gossip",
        *extra,
        env=jenga_env(**env),
        name="worker",
    ).start()


def rows(url: str, namespace: str) -> set[int]:
    with psycopg.connect(url, connect_timeout=2) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"outage_{namespace}",)).fetchone()[0]
        if exists is None:
            return set()
        return {n for (n,) in conn.execute(f"SELECT n FROM outage_{namespace}")}


def test_postgres_outage_pauses_deliveries_and_loses_nothing(
    broker_env, postgres_server, redis_client, tmp_path
):
    ns = broker_env["JENGA_NAMESPACE"]
    env = dict(
        broker_env,
        DATABASE_URL=postgres_server.url,
        CHECK_INTERVAL_SECONDS="0.2",
        HEARTBEAT_DIR=str(tmp_path),
        HEARTBEAT_INTERVAL_SECONDS="0.5",
    )
    settings = load_settings(env, wait_seconds=0)
    queues = queue_names(settings)
    broker_options = celery_config(settings)["broker_transport_options"]

    def waiting_deliveries() -> int:
        return waiting(settings.effective_broker_url, queues["deliveries"], broker_options)

    hostname = f"outage-{uuid.uuid4().hex[:6]}@test"
    app = sender(env)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE outage_{ns} (n int PRIMARY KEY)")
    # Work already waits on both queues when the worker starts: the gate opens
    # the deliveries queue while the broker is already handing out the rest.
    for n in range(5):
        app.send_task("tests.record", args=[n], queue=queues["deliveries"])
        app.send_task("tests.mark", args=[100 + n], queue=queues["default"])
    worker = start_worker(env, hostname, f"{queues['default']},{queues['deliveries']}")
    try:
        worker.wait_for_output("ready.", 60)
        wait_for(lambda: worker_health(env, hostname).returncode == 0, 20, what="worker ready")
        wait_for(lambda: rows(postgres_server.url, ns) == set(range(5)), 30, what="first rows")
        wait_for(lambda: redis_client.scard(f"{ns}:test:marked") == 5, 20, what="first marks")

        # Caught mid-run: this task holds a transaction open when the server dies.
        caught = app.send_task("tests.record", args=[5, 5.0], queue=queues["deliveries"])
        wait_for(lambda: f"{caught.id}] received" in worker.output(), 10, what="long task started")
        postgres_server.stop()
        wait_for(lambda: "worker.queues_paused" in worker.output(), 10, what="deliveries paused")
        for n in range(6, 16):
            app.send_task("tests.record", args=[n], queue=queues["deliveries"])
        for n in range(10):
            app.send_task("tests.mark", args=[n], queue=queues["default"])
        # Tasks that don't need PostgreSQL keep flowing ...
        wait_for(
            lambda: redis_client.scard(f"{ns}:test:marked") == 15, 20, what="default queue flowing"
        )
        # ... and those that do wait in the broker, not as retries in the worker.
        wait_for(lambda: waiting_deliveries() >= 10, 10, what="deliveries waiting in the broker")
        assert worker_health(env, hostname).returncode == 0  # still consuming the broker
        assert worker.alive()

        postgres_server.start()
        wait_for(
            lambda: rows(postgres_server.url, ns) == set(range(16)),
            60,
            what="every row after recovery",
        )
        assert "worker.queues_resumed" in worker.output().split("worker.queues_paused", 1)[1]
        assert waiting_deliveries() == 0
        assert worker.alive()
    finally:
        code = worker.stop()
    output = worker.output()
    assert "Traceback" not in output  # the caught task was retried, not failed
    assert re.search(r"tests\.record\[[^\]]+\] retry: Retry in", output)
    assert code == 0, output[-3000:]
    assert not heartbeat_path(tmp_path, hostname).exists()  # removed on a clean stop


def test_broker_down_at_boot_retries_with_jitter_then_consumes(
    settings_env, redis_client, tmp_path
):
    ns = settings_env["JENGA_NAMESPACE"]
    broker = RedisServer()  # its port is known; it is started later
    env = dict(
        settings_env,
        BROKER_URL=broker.url,
        HEARTBEAT_DIR=str(tmp_path),
        HEARTBEAT_INTERVAL_SECONDS="0.5",
        RECONNECT_BASE_SECONDS="0.2",
        RECONNECT_CAP_SECONDS="1",
    )
    queues = queue_names(load_settings(env, wait_seconds=0))
    hostname = f"nobroker-{uuid.uuid4().hex[:6]}@test"
    worker = start_worker(env, hostname, queues["default"])
    try:
        wait_for(
            lambda: worker.output().count("event=broker.connect_failed") >= 8,
            30,
            what="8 broker retries",
        )
        delays = [
            float(d)
            for d in re.findall(r"broker\.connect_failed .*?retry_in=([0-9.]+)", worker.output())
        ]
        assert len(delays) >= 8
        assert all(0 <= d <= 1.0 for d in delays)  # bounded by RECONNECT_CAP_SECONDS
        assert len(set(delays)) > len(delays) // 2  # jittered, not a fixed schedule
        # Alive but not ready, for a liveness probe and a readiness probe.
        assert worker_health(env, hostname).returncode == 1
        assert worker_health(env, hostname, "--live").returncode == 0
        assert (
            json.loads(redis_client.get(heartbeat_key(ns, hostname)))["consumer_connected"] is False
        )

        broker.start()
        came_back = time.monotonic()
        wait_for(
            lambda: worker_health(env, hostname).returncode == 0,
            20,
            what="ready after the broker came back",
        )
        # Cap (1 s) + heartbeat interval + probe start-ups, with room for a loaded machine;
        # kombu's own schedule would be 16 s or more between tries by now.
        assert time.monotonic() - came_back < 10

        # Heartbeat keeps beating while every pool slot is busy.
        app = sender(env)
        for _ in range(2):
            app.send_task("tests.hold", args=[4.0], queue=queues["default"])
        wait_for(
            lambda: "tests.hold" in worker.output() and "received" in worker.output(),
            10,
            what="holds started",
        )
        first = json.loads(heartbeat_path(tmp_path, hostname).read_text())["time"]
        # Within the 4 s holds: the beats come from the main process, not a pool slot.
        wait_for(
            lambda: (
                json.loads(heartbeat_path(tmp_path, hostname).read_text())["time"] >= first + 1.0
            ),
            3,
            what="heartbeats while every pool slot is busy",
        )
        app.send_task("tests.mark", args=[1], queue=queues["default"])
        wait_for(lambda: redis_client.scard(f"{ns}:test:marked") == 1, 20, what="task consumed")

        # Broker lost after connecting: not ready while away, ready again after.
        broker.stop()
        wait_for(
            lambda: worker_health(env, hostname).returncode == 1,
            20,
            what="not ready without the broker",
        )
        live = worker_health(env, hostname, "--live")
        assert live.returncode == 0, f"{live.stderr} worker output:\n{worker.output()[-4000:]}"
        broker.start()
        wait_for(
            lambda: worker_health(env, hostname).returncode == 0,
            20,
            what="ready after the broker returned",
        )

        stats = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "inspect",
                "stats",
                "-j",
                "-d",
                hostname,
            ],
            env=jenga_env(**env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert '"jenga_connections"' in stats.stdout and '"jenga_heartbeat"' in stats.stdout, (
            stats.stdout + stats.stderr
        )
        assert worker.alive()
    finally:
        worker.stop()
        broker.close()


def test_prefork_worker_boots_with_everything_down_then_climbs(
    settings_env, postgres_server, redis_server, tmp_path
):
    ns = settings_env["JENGA_NAMESPACE"]
    postgres_server.stop()
    redis_server.stop()
    broker = RedisServer()
    env = dict(
        settings_env,
        DATABASE_URL=postgres_server.url,
        REDIS_URL=redis_server.url,
        BROKER_URL=broker.url,
        CHECK_INTERVAL_SECONDS="0.2",
        HEARTBEAT_DIR=str(tmp_path),
        HEARTBEAT_INTERVAL_SECONDS="0.5",
    )
    queues = queue_names(load_settings(env, wait_seconds=0))
    hostname = f"climb-{uuid.uuid4().hex[:6]}@test"
    worker = start_worker(
        env, hostname, f"{queues['default']},{queues['deliveries']}", pool="prefork"
    )

    def beat() -> dict:
        return json.loads(heartbeat_path(tmp_path, hostname).read_text())

    try:
        wait_for(
            lambda: (
                beat()["dependencies"] == {"postgres": "down", "redis": "down", "broker": "down"}
            ),
            30,
            what="every dependency seen down",
        )
        assert worker_health(env, hostname, "--live").returncode == 0
        assert worker_health(env, hostname).returncode == 1

        broker.start()
        wait_for(
            lambda: worker_health(env, hostname).returncode == 0,
            20,
            what="ready once the broker is up",
        )
        assert (
            "worker.queues_resumed" not in worker.output()
        )  # PostgreSQL still down: deliveries stay paused

        redis_server.start()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        wait_for(
            lambda: client.get(heartbeat_key(ns, hostname)),
            10,
            what="heartbeat key once Redis is up",
        )
        assert client.ttl(heartbeat_key(ns, hostname)) > 0

        postgres_server.start()
        wait_for(lambda: "worker.queues_resumed" in worker.output(), 20, what="deliveries resumed")
        wait_for(
            lambda: beat()["dependencies"] == {"postgres": "up", "redis": "up", "broker": "up"},
            10,
            what="every dependency up",
        )

        # Redis lost under a running worker: it stays live and ready (the file is the probe).
        redis_server.stop()
        wait_for(lambda: beat()["dependencies"]["redis"] == "down", 10, what="redis seen down")
        assert worker_health(env, hostname).returncode == 0
        redis_server.start()
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        wait_for(
            lambda: client.get(heartbeat_key(ns, hostname)), 10, what="heartbeat key rewritten"
        )
        assert worker.alive()
    finally:
        code = worker.stop()
        broker.close()
    assert code == 0, worker.output()[-3000:]
    assert "Traceback" not in worker.output()
