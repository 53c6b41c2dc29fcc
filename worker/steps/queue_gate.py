"""Level 1 in the worker: the queues whose tasks need PostgreSQL are consumed
only while it is up, so their tasks wait in the broker during an outage
instead of piling up as retries in the worker."""

from __future__ import annotations

import logging

from common.support.logs import log_event

__all__ = ["QueueGate"]

log = logging.getLogger("jenga.worker")


class QueueGate:
    """Consumes ``queues`` only while their dependency is up.

    Decisions arrive from a monitor thread; changes to the consumer are made on
    the consumer's own event loop (``hub.call_soon``), never from that thread,
    through Celery's own ``add_task_queue`` / ``cancel_task_queue``."""

    def __init__(self, app, queues: list[str]):
        self.app = app
        self.queues = queues
        self.open = False  # closed until the dependency is first seen up
        self.consumer = None

    def close_before_start(self) -> None:
        if self.queues:
            self.app.amqp.queues.deselect(self.queues)

    def set_open(self, open_: bool) -> None:
        if open_ == self.open:
            return
        self.open = open_
        if not self.queues:
            return
        log_event(
            log,
            "worker.queues_resumed" if open_ else "worker.queues_paused",
            logging.INFO if open_ else logging.WARNING,
            queues=",".join(self.queues),
        )
        consumer = self.consumer
        hub = getattr(consumer, "hub", None) if consumer is not None else None
        if hub is not None:
            hub.call_soon(self.apply)
        elif consumer is None:
            self._select()  # not connected: the next consumer start picks this up

    def _select(self) -> None:
        queues = self.app.amqp.queues
        for name in self.queues:
            if self.open:
                queues.select_add(queues[name])
            else:
                queues.deselect(name)

    def attach(self, consumer) -> None:
        """Called from the consumer's start, before its event loop runs. Adding
        a queue there would start consuming before Celery has set the task
        handler (``asynloop`` does that): py-amqp hands the waiting messages to
        a consumer with no callback and the worker dies. So the change waits
        for the loop's first turn."""
        self.consumer = consumer
        hub = getattr(consumer, "hub", None)
        if hub is not None:
            hub.call_soon(self.apply)
        else:
            self.apply()

    def detach(self) -> None:
        self.consumer = None

    def apply(self) -> None:
        """Runs on the consumer's thread: make the consumer match ``open``."""
        consumer = self.consumer
        task_consumer = getattr(consumer, "task_consumer", None)
        if task_consumer is None:
            self._select()
            return
        for name in self.queues:
            consuming = task_consumer.consuming_from(name)
            if self.open and not consuming:
                consumer.add_task_queue(name)
            elif not self.open and consuming:
                consumer.cancel_task_queue(name)
