"""Level 1 in the worker's main process: PostgreSQL, Redis and broker monitors
that start disconnected and never block boot, and the gate of the queues
whose tasks need PostgreSQL."""

from __future__ import annotations

from celery import bootsteps

from common.broker import POSTGRES_QUEUE_ROLES
from common.config import get_settings
from common.connections.database import make_engine
from common.connections.dependency import Dependencies
from common.redis.client import redis_for
from common.support.per_process import ProcessSlot
from worker.celeryconfig import queue_names
from worker.steps.config import ConfigStep
from worker.steps.queue_gate import QueueGate

__all__ = ["ConnectionsStep", "current_dependencies"]

_dependencies: ProcessSlot[Dependencies | None] = ProcessSlot(None)


def current_dependencies() -> Dependencies | None:
    """The dependency monitors of this worker process (None outside a worker)."""
    return _dependencies.get()


class ConnectionsStep(bootsteps.StartStopStep):
    """Owns ``worker.jenga_connections`` (this step): the dependency monitors,
    the queue gate, and whether the consumer is connected to the broker (set
    by :class:`~worker.steps.consumer.ConsumerStateStep`)."""

    label = "jenga connections"
    requires = (ConfigStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.settings = get_settings()
        self.engine = make_engine(self.settings, pool_size=1)
        self.redis = redis_for(self.settings)
        self.dependencies = Dependencies.from_settings(
            self.settings, engine=self.engine, redis=self.redis
        )
        queues = queue_names(self.settings)
        needs_postgres = [queues[role] for role in POSTGRES_QUEUE_ROLES]
        selected = worker.app.amqp.queues.consume_from
        self.gate = QueueGate(worker.app, [q for q in needs_postgres if q in selected])
        self.consumer_connected = False
        worker.jenga_connections = self

    def start(self, worker):
        self.gate.close_before_start()
        self.dependencies["postgres"].on_change(lambda old, new: self.gate.set_open(new.up))
        _dependencies.set(self.dependencies)
        self.dependencies.start()

    def stop(self, worker):
        self.dependencies.stop()
        _dependencies.set(None)
        self.engine.dispose()
        self.redis.close()

    def info(self, worker):
        return {
            "jenga_connections": {
                "dependencies": {
                    name: s.as_dict() for name, s in self.dependencies.snapshot().items()
                },
                "gated_queues": self.gate.queues,
                "gated_queues_consumed": self.gate.open,
            }
        }
