"""The worker's consumer: whether it is connected to the broker (for the
heartbeat), the queue gate applied after each (re)connection, and broker
(re)connects spaced by backoff with full jitter."""

from __future__ import annotations

import logging
import time

from celery import bootsteps
from celery.worker.consumer import Consumer
from celery.worker.state import maybe_shutdown
from kombu.exceptions import OperationalError

from common.config import get_settings
from common.connections.probes import describe_error
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from common.support.masking import mask_url

__all__ = ["ConsumerStateStep", "JengaConsumer"]

log = logging.getLogger("jenga.worker")


class ConsumerStateStep(bootsteps.StartStopStep):
    """Consumer blueprint: tells ``worker.jenga_connections`` (the
    :class:`~worker.steps.connections.ConnectionsStep`) when the consumer is
    connected, and hands it to the queue gate once the task consumer exists."""

    label = "jenga consumer state"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c):
        connections = c.controller.jenga_connections
        connections.gate.attach(c)
        connections.consumer_connected = True
        log_event(log, "worker.consumer_connected", broker=mask_url(c.connection.as_uri()))

    def stop(self, c):
        self._disconnected(c)

    def shutdown(self, c):
        self._disconnected(c)

    def _disconnected(self, c):
        connections = c.controller.jenga_connections
        connections.gate.detach()
        connections.consumer_connected = False

    def info(self, c):
        return {"jenga_consumer": {"connected": c.controller.jenga_connections.consumer_connected}}


class JengaConsumer(Consumer):
    """Celery's consumer with broker (re)connects spaced by backoff with full
    jitter, bounded by ``RECONNECT_CAP_SECONDS``. Kombu's own schedule
    (2, 4, 6 ... 30 s, identical in every process) would keep a worker deaf
    for up to 30 s after the broker returns and reconnect a fleet in lock step."""

    def ensure_connected(self, conn):
        conf = self.app.conf
        first = self.first_connection_attempt
        retry = conf.broker_connection_retry_on_startup if first else conf.broker_connection_retry
        if retry is False or retry is None and first and not conf.broker_connection_retry:
            return super().ensure_connected(conn)
        settings = get_settings()
        attempt = 0
        while True:
            maybe_shutdown()
            try:
                conn.ensure_connection(max_retries=0)
                break
            except conn.recoverable_connection_errors + (OperationalError, OSError) as error:
                delay = full_jitter_backoff(
                    attempt, settings.reconnect_base_seconds, settings.reconnect_cap_seconds
                )
                attempt += 1
                self.broker_connection_retry_attempt = attempt
                log_event(
                    log,
                    "broker.connect_failed",
                    logging.ERROR,
                    broker=mask_url(conn.as_uri()),
                    error=describe_error(error),
                    attempt=attempt,
                    retry_in=round(delay, 3),
                )
                self._sleep(delay)
        self.first_connection_attempt = False
        self.broker_connection_retry_attempt = 0
        return conn

    @staticmethod
    def _sleep(seconds: float) -> None:
        # In slices, so a shutdown signal is honoured while the broker is away.
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            maybe_shutdown()
            time.sleep(min(0.25, remaining))
