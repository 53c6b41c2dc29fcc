"""The worker's start-up order as a declared graph, one bootstep per file.

Worker blueprint: ``ConfigStep`` (level 0, first: settings before any
connection), then ``ConnectionsStep`` (level 1: dependency monitors, the
deliveries queue gate), ``BreakersStep`` (level 4 hooks) and ``HeartbeatStep``
(level 2), ``DrainStep`` (a deploy's SIGTERM: finish in-flight work within a
grace, hand the rest on). Consumer blueprint: ``ConsumerStateStep`` (broker connected, gate
applied). ``JengaConsumer`` (setting ``worker_consumer``) retries the broker
with backoff and full jitter. Order comes from each step's ``requires``.
"""

from worker.steps.breakers import BreakersStep
from worker.steps.config import ConfigStep
from worker.steps.connections import ConnectionsStep, current_dependencies
from worker.steps.consumer import ConsumerStateStep, JengaConsumer
from worker.steps.drain import DrainStep
from worker.steps.heartbeat import HeartbeatStep

__all__ = [
    "BreakersStep",
    "ConfigStep",
    "ConnectionsStep",
    "ConsumerStateStep",
    "DrainStep",
    "HeartbeatStep",
    "JengaConsumer",
    "current_dependencies",
]
