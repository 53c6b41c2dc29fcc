"""One cheap check per dependency, each bounded by a timeout and each returning
a :class:`CheckResult` instead of raising. Used by the dependency monitors
(level 1), the health endpoints (level 2) and the beat watchdogs (level 3)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis
from kombu import Connection
from sqlalchemy import Engine, text

from common.broker import is_redis_broker
from common.redis.client import make_redis
from common.support.masking import SECRETS


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_seconds: float
    error: str | None = None  # one line, secrets scrubbed
    checked_at: float = field(default_factory=time.time)


def describe_error(error: BaseException) -> str:
    """``ExceptionClass: first line of the message``, with secrets scrubbed."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text_ = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return SECRETS.scrub(text_)[:300]


def _timed(check) -> CheckResult:
    started = time.perf_counter()
    try:
        check()
    except Exception as error:
        return CheckResult(False, time.perf_counter() - started, describe_error(error))
    return CheckResult(True, time.perf_counter() - started)


def check_postgres(engine: Engine, timeout: float) -> CheckResult:
    """``SELECT 1`` on a pooled connection, with a statement timeout."""

    def run() -> None:
        with engine.connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout * 1000)}"))
            conn.execute(text("SELECT 1"))

    return _timed(run)


def check_redis(client: redis.Redis) -> CheckResult:
    """``PING``; the client's own socket timeouts bound it."""
    return _timed(client.ping)


def check_broker(broker_url: str, timeout: float) -> CheckResult:
    """A round trip to the broker, no retries: ``PING`` for Redis (opening a
    kombu connection to Redis sends nothing, so a frozen server would pass),
    the AMQP handshake for RabbitMQ."""

    if is_redis_broker(broker_url):

        def run() -> None:
            # make_redis: a redis+sentinel:// URL pings the primary the Sentinels name now.
            client = make_redis(broker_url, timeout)
            try:
                client.ping()
            finally:
                client.close()
    else:

        def run() -> None:
            with Connection(
                broker_url, connect_timeout=timeout, transport_options={"max_retries": 0}
            ) as conn:
                conn.ensure_connection(
                    max_retries=1, interval_start=0, interval_step=0, timeout=timeout
                )

    return _timed(run)
