"""Level 0: with a bad configuration every process stops with one clear
message, fast, having opened no connection to the broker, Redis or PostgreSQL.

The URLs point at a local listener that counts accepted connections; the
process must exit non-zero within 8 s (half a second of config retries, the
rest interpreter start-up on a loaded machine) and the count must stay zero."""

import socket
import sys
import threading
import time

import pytest

from tests.support.servers import JengaProcess, jenga_env


class CountingListener:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    counting = CountingListener()
    yield counting
    counting.close()


def bad_env(port: int) -> dict[str, str]:
    return jenga_env(
        DATABASE_URL=f"postgresql://jenga:dbsecret99@127.0.0.1:{port}/jenga",
        REDIS_URL=f"redis://:redissecret99@127.0.0.1:{port}/0",
        BROKER_URL=f"amqp://guest:brokersecret99@127.0.0.1:{port}//",
        JENGA_ADMIN_TOKEN="tooshort",  # the one invalid setting
        PORT="8123",
        FLOWER_PORT="8124",
        CONFIG_WAIT_SECONDS="0.5",  # still retried, but not the 2 s default inside the time bound
    )


COMMANDS = {
    "worker": lambda env: JengaProcess.celery("worker", "--loglevel=INFO", env=env, name="worker"),
    "beat": lambda env: JengaProcess.celery("beat", "--loglevel=INFO", env=env, name="beat"),
    "flower": lambda env: JengaProcess.celery(
        "flower", "--conf=worker/flowerconfig.py", env=env, name="flower"
    ),
    "api": lambda env: JengaProcess.api(env),
    "migrations": lambda env: JengaProcess(
        [sys.executable, "-m", "alembic", "upgrade", "head"], env, "alembic"
    ),
}


@pytest.mark.parametrize("process", sorted(COMMANDS))
def test_bad_config_stops_process_before_any_connection(process, listener):
    proc = COMMANDS[process](bad_env(listener.port)).start()
    started = time.monotonic()
    try:
        proc.proc.wait(timeout=15)
    finally:
        elapsed = time.monotonic() - started
        proc.stop()
    output = proc.output()
    assert proc.proc.returncode != 0, output
    assert elapsed < 5.0, f"{process} took {elapsed:.1f}s to give up"  # the contract
    assert listener.accepted == 0, (
        f"{process} connected {listener.accepted} time(s) despite bad config"
    )
    assert "JENGA_ADMIN_TOKEN: too short" in output, output
    assert "Traceback" not in output, output
    for secret in ("dbsecret99", "redissecret99", "brokersecret99", "tooshort"):
        assert secret not in output
