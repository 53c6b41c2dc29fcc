"""The worker's consumer: whether it is connected to the broker (for the
heartbeat), the queue gate applied after each (re)connection, broker
(re)connects spaced by backoff with full jitter, and a teardown of a lost
Redis broker connection that cannot crash the worker."""

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

try:
    from celery.utils.threads import bound_open_broker_sockets
except ImportError:  # Celery < 5.7, whose teardown does not close the connection again

    def bound_open_broker_sockets(connection, timeout):
        pass


__all__ = ["ConsumerStateStep", "JengaConsumer", "close_channels_one_by_one"]

log = logging.getLogger("jenga.worker")

# As Celery's own teardown (COLLECT_SOCKET_TIMEOUT): a read on a broker that
# went silent must not hang the worker.
TEARDOWN_SOCKET_TIMEOUT_SECONDS = 5.0


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


def close_channels_one_by_one(connection) -> None:
    """Close every channel of a lost virtual-transport (Redis) connection,
    each on its own, ignoring the errors a dead broker gives.

    Celery 5.7 tears a lost connection down with ``collect()`` and then
    ``close()``. Kombu's ``collect()`` stops closing channels at the first
    one that fails (a channel with a BRPOP in flight only drains it on its
    first close), and then releases the transport; the later ``close()``
    reaches a channel that still holds unacknowledged messages, whose restore
    needs the released transport and raises ``AttributeError``, which stops
    the worker. Closed here first, every channel is closed by then, so both
    steps have nothing left to do. The messages whose restore fails stay in
    the broker's unacked set, which the visibility timeout gives back."""
    transport = connection._transport  # not .transport, which would make one
    channels = getattr(transport, "channels", None)
    if not channels:
        return  # py-amqp: the broker requeues unacknowledged messages itself
    errors = connection.connection_errors + connection.channel_errors
    for channel in list(channels):
        for _ in range(2):  # the second close runs what a drained BRPOP skipped
            if channel.closed:
                break
            try:
                channel.close()
            except errors:
                pass


class JengaConsumer(Consumer):
    """Celery's consumer with broker (re)connects spaced by backoff with full
    jitter, bounded by ``RECONNECT_CAP_SECONDS``. Kombu's own schedule
    (2, 4, 6 ... 30 s, identical in every process) would keep a worker deaf
    for up to 30 s after the broker returns and reconnect a fleet in lock step.
    A lost connection's channels are closed one by one before Celery's own
    teardown (see :func:`close_channels_one_by_one`)."""

    def on_connection_error_after_connected(self, exc):
        if self.connection is not None:
            bound_open_broker_sockets(self.connection, TEARDOWN_SOCKET_TIMEOUT_SECONDS)
            close_channels_one_by_one(self.connection)
        super().on_connection_error_after_connected(exc)

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
