"""Level 5: how long the dispatcher waits before it enqueues again a message whose
task was enqueued and never started.

Such a task is either still in the broker's queue, behind others, or it was lost:
the broker lost it, or a worker received it and died before claiming the message
(Redis gives a dead worker's unacknowledged tasks back only after the visibility
timeout, an hour). While the deliveries queue holds tasks, a second task per
waiting message would only double the queue, so the wait is
``DELIVERY_REDISPATCH_SECONDS``. Once nothing waits in the queue, a message
enqueued ``LOST_TASK_SECONDS`` ago and still unclaimed has no task coming: it is
enqueued again then. A task held by a live worker that has not claimed yet (the
delivery pool's connections all busy) meets a duplicate at worst, and the claim
lets one of them through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from common.broker import queue_names
from common.config import Settings
from common.connections.probes import describe_error
from common.support.logs import log_event
from worker.app import app

__all__ = ["LOST_TASK_SECONDS", "deliveries_waiting", "redispatch_seconds"]

log = logging.getLogger("jenga.delivery")

# Far longer than a live worker takes from receiving a task to claiming its message.
LOST_TASK_SECONDS = 20.0


def redispatch_seconds(configured: float, waiting: int | None) -> float:
    """The dispatcher's wait for an enqueued, never started message, given the
    tasks ``waiting`` in the deliveries queue (None: the broker did not say)."""
    if waiting == 0:
        return min(configured, LOST_TASK_SECONDS)
    return configured


def deliveries_waiting(
    settings: Settings, connection: Callable[[], AbstractContextManager] | None = None
) -> int | None:
    """Tasks ready in the deliveries queue, or None when the broker does not answer.
    ``connection``: a kombu connection to use (default: one of the app's pool)."""
    queue = queue_names(settings.jenga_namespace)["deliveries"]
    # Passive on AMQP (a plain declare would conflict with the queue's arguments); kombu's
    # Redis transports refuse a passive declare of an empty list, and their plain one
    # creates nothing.
    passive = not settings.effective_broker_url.startswith(("redis", "rediss", "sentinel"))
    if connection is None:
        timeout = settings.check_timeout_seconds
        connection = lambda: app.pool.acquire(block=True, timeout=timeout)  # noqa: E731
    try:
        with connection() as conn:
            return conn.default_channel.queue_declare(queue, passive=passive).message_count
    except Exception as error:  # any broker failure: keep the long wait
        log_event(log, "delivery.queue_depth_unknown", logging.DEBUG, error=describe_error(error))
        return None
