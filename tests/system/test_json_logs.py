"""``LOG_FORMAT=json``: every line each Procfile process writes is one JSON
object with a ``message`` and a ``level``, from start-up to a SIGTERM shutdown:
Celery's banners (one ``worker.starting`` / ``beat.starting`` event instead),
Python warnings (``SecurityWarning`` as root), a task's traceback, a pool
process that dies, the worker's "Warm shutdown" notice, uvicorn's and tornado's
loggers, Alembic's. Real processes against the real test servers.

A bad configuration is one JSON line too (event ``config.invalid``) when the
environment says ``LOG_FORMAT=json``. The one exception, decided: when
``LOG_FORMAT`` is itself the invalid setting, the format is unknown and the
message stays the text for people."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from celery import Celery

from tests.support.servers import ROOT, JengaProcess, free_port, jenga_env, wait_for
from worker.celeryconfig import celery_config, queue_names

pytestmark = pytest.mark.slow


def json_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    return jenga_env(**{**settings_env, "LOG_FORMAT": "json", **extra})


def records(process: JengaProcess | str) -> list[dict]:
    """Every line of the process's output as a parsed object; fails on the
    first one that is not a JSON object with a message and a level."""
    output = process if isinstance(process, str) else process.output()
    parsed = []
    for number, line in enumerate(output.splitlines(), 1):
        if line == "":
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}\n--- output ---\n{output}")
        assert isinstance(record, dict) and {"message", "level"} <= record.keys(), line
        parsed.append(record)
    assert parsed, "the process wrote nothing"
    return parsed


def messages(parsed: list[dict]) -> list[str]:
    return [record["message"] for record in parsed]


def pool_processes(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


def test_worker_prefork_task_failure_pool_loss_and_warm_shutdown(settings, settings_env, namespace):
    queues = queue_names(settings)
    worker = JengaProcess.celery(
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "-n",
        f"json-{namespace}@%h",
        "-Q",
        ",".join(queues[role] for role in ("default", "deliveries", "alarms")),
        env=json_env(settings_env),
        name="worker-json",
    ).start()
    sender = Celery("json-logs", broker=settings.effective_broker_url, set_as_current=False)
    sender.conf.broker_transport_options = celery_config(settings)["broker_transport_options"]
    try:
        worker.wait_for_output("ready.", 60)
        sender.send_task("jenga.selftest", args=["json-logs"], queue=queues["default"])
        sender.send_task(
            "jenga.selftest", args=[], queue=queues["default"]
        )  # TypeError in the task
        worker.wait_for_output("succeeded", 30)
        worker.wait_for_output("raised unexpected", 30)
        os.kill(pool_processes(worker.proc.pid)[0], signal.SIGKILL)
        worker.wait_for_output("exited with", 30)
    finally:
        sender.close()
        returncode = worker.stop()
    assert returncode == 0, worker.output()[-3000:]

    parsed = records(worker)
    events = {record.get("event"): record for record in parsed}
    assert (
        events["worker.starting"]["pool"] == "prefork"
        and events["worker.starting"]["concurrency"] == 2
    )
    failure = next(r for r in parsed if "raised unexpected" in r["message"])
    assert failure["level"] == "error" and "Traceback" in failure["exception"]
    assert "TypeError" in failure["exception"]
    assert any(r["logger"] == "multiprocessing" and "exited with" in r["message"] for r in parsed)
    assert "worker: Warm shutdown (MainProcess)" in messages(parsed)
    if os.geteuid() == 0:  # Celery warns about root with a multi-line SecurityWarning
        assert any(
            r["logger"] == "py.warnings" and "SecurityWarning" in r["message"] for r in parsed
        )


def test_beat(settings_env):
    beat = JengaProcess.celery(
        "beat", "--loglevel=INFO", env=json_env(settings_env), name="beat-json"
    ).start()
    try:
        # beat.starting comes from beat_init, which builds the scheduler first
        # (watchdog.beat_started): wait for the later line, or SIGTERM can land between.
        beat.wait_for_output('"beat.starting"', 30)
    finally:
        returncode = beat.stop()
    assert returncode == 0, beat.output()
    assert any(record.get("event") == "beat.starting" for record in records(beat))


def test_flower(settings_env):
    port = free_port()
    env = json_env(settings_env, FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:json-logs-pass-123")
    flower = JengaProcess.celery(
        "flower", "--conf=worker/flowerconfig.py", env=env, name="flower-json"
    ).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200,
            30,
            what="Flower up",
        )
        assert httpx.get(f"{base}/api/workers", timeout=5).status_code == 401
        with socket.create_connection(("127.0.0.1", port), timeout=5) as garbage:
            garbage.sendall(b"NOT HTTP\r\n\r\n")  # tornado logs "Malformed HTTP message"
            garbage.recv(100)
        flower.wait_for_output("Malformed HTTP message", 10)
    finally:
        returncode = flower.stop()
    assert returncode == 0, flower.output()
    loggers = {record["logger"] for record in records(flower)}
    assert "tornado.general" in loggers and "flower.command" in loggers
    assert "json-logs-pass-123" not in flower.output()


def test_web(settings_env):
    port = free_port()
    api = JengaProcess.api(json_env(settings_env, PORT=str(port))).start()
    try:
        api.wait_for_output("Uvicorn running", 30)
        assert httpx.get(f"http://127.0.0.1:{port}/live", timeout=5).status_code == 200
    finally:
        returncode = api.stop()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert returncode in (0, -signal.SIGTERM), api.output()
    parsed = records(api)
    assert "Application shutdown complete." in messages(parsed)
    assert all(r["logger"] != "uvicorn.error" or r["level"] == "info" for r in parsed)


def test_release(settings_env, migrated_database_url):
    env = json_env(settings_env, DATABASE_URL=migrated_database_url)
    release = JengaProcess(
        [sys.executable, "-m", "alembic", "upgrade", "head"], env, "release-json"
    ).start()
    assert release.proc.wait(60) == 0, release.output()
    assert any(record["logger"].startswith("alembic") for record in records(release))


def test_bad_config_is_one_json_line_naming_the_problem(settings_env):
    worker = JengaProcess.celery(
        "worker",
        "--loglevel=INFO",
        name="bad-json",
        env=json_env(settings_env, JENGA_ADMIN_TOKEN="tooshort"),
    ).start()
    assert worker.proc.wait(30) == 78
    [record] = records(worker)
    assert record["level"] == "critical" and record["event"] == "config.invalid"
    assert len(record["problems"]) == 1 and record["problems"][0].startswith(
        "JENGA_ADMIN_TOKEN: too short"
    )
    assert "tooshort" not in worker.output()


def test_bad_log_format_itself_is_reported_as_text(settings_env):
    api = JengaProcess.api(jenga_env(**{**settings_env, "LOG_FORMAT": "jsonl"})).start()
    assert api.proc.wait(30) == 78
    output = api.output()
    assert output.startswith("Jenga cannot start") and "LOG_FORMAT" in output, output


PYTHON_FAILURES = """
import logging, threading, warnings
from common.support.logs import configure_logging
configure_logging("json")
warnings.warn("a warning\\nin two lines")
logging.getLogger("careless").info("%s and %s", "one argument short")
class Finalizer:
    def __del__(self):
        raise RuntimeError("raised in __del__")
Finalizer()
doomed = threading.Thread(target=lambda: 1 / 0, name="doomed")
doomed.start()
doomed.join()
raise ValueError("uncaught")
"""


def test_python_warnings_and_uncaught_exceptions_are_json_lines():
    done = subprocess.run(
        [sys.executable, "-c", PYTHON_FAILURES],
        cwd=ROOT,
        env=jenga_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and done.stdout == ""
    parsed = records(done.stderr)
    assert [r.get("event") or r["logger"] for r in parsed] == [
        "py.warnings",
        "logging.error",
        "process.unraisable_exception",
        "thread.uncaught_exception",
        "process.uncaught_exception",
    ]
    assert parsed[1]["logger"] == "careless" and "not enough arguments" in parsed[1]["message"]
    assert "RuntimeError: raised in __del__" in parsed[2]["exception"]
    assert "ZeroDivisionError" in parsed[3]["exception"] and parsed[3]["thread_name"] == "doomed"
    assert "ValueError: uncaught" in parsed[4]["exception"]
