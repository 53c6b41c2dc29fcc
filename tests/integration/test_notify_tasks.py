"""``send_notify_tasks``: the API and CLI hand alarm transitions to the worker's
notifier tasks; a broker that does not answer must not hold the operator's call."""

from __future__ import annotations

import socket
import threading
import time

from common.alarms.dispatch import send_notify_tasks
from common.alarms.store import Transition
from common.config import load_settings


def test_a_broker_that_never_answers_costs_a_bounded_wait(settings_env):
    # Accepts connections (the kernel does) but never reads or answers: a hung broker.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    settings = load_settings(
        {
            **settings_env,
            "BROKER_URL": f"redis://127.0.0.1:{port}/0",
            "SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
            "CHECK_TIMEOUT_SECONDS": "0.5",
        },
        wait_seconds=0,
    )
    transition = Transition(
        "breaker:x", "set", "circuit breaker 'x' is open", "critical", 1.0, {}, 1.0
    )
    sent: list[int] = []
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: sent.append(send_notify_tasks(settings, transition)), daemon=True
    )
    thread.start()
    try:
        thread.join(20)
        assert not thread.is_alive(), "send_notify_tasks hung on a broker that never answers"
        assert sent == [0]  # nothing queued, and said so in the log instead of raising
        assert time.monotonic() - started < 15
    finally:
        silent.close()
