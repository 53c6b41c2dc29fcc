"""No level: what the worker and its publishers agree on through the broker.

* Queue names (``{ns}.default``, ``{ns}.deliveries``, ``{ns}.operational``,
  ``{ns}.alarms``) and the
  names of the tasks that are sent by name (by beat, the API, the ``jenga``
  command line, operators), so nothing needs to import the worker to publish.
* :func:`publisher`: the one publish-only Celery client (the API's delivery
  enqueue, the operator's notifications from the API and the command line).
* :func:`kombu_broker`: ``BROKER_URL`` as kombu wants it. A
  ``redis+sentinel://`` URL becomes a sentinel transport
  (:mod:`common.redis.kombu_sentinel`, kombu's own following the primary as the
  shared-state client does; ``master_name`` and the Sentinels in the transport
  options), so workers and publishers follow a failover.
* :func:`queue_declarations`: how every declarer (worker, beat, API, command line)
  declares the queues, so all of them agree on ``BROKER_QUEUE_TYPE``; with quorum
  queues, :func:`whole_second_delay` is how long a delayed task waits.

Celery is imported only when a client is built.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from common.config import Settings
from common.redis.client import sentinel_client_options
from common.redis.keys import RedisKeys
from common.redis.urls import is_sentinel_url, parse_sentinel_url

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "DELIVER_TASK",
    "DISPATCH_TASK",
    "FAN_OUT_DIRECT_MAX",
    "FAN_OUT_TASK",
    "JOBS_TASK",
    "METRICS_PROBE_TASK",
    "NOTIFY_TASK",
    "OPERATIONAL_ROUTE_TASK",
    "POSTGRES_QUEUE_ROLES",
    "QUEUE_ROLES",
    "SELFTEST_TASK",
    "WATCHDOG_TASK",
    "KombuBroker",
    "is_redis_broker",
    "kombu_broker",
    "publisher",
    "queue_declarations",
    "queue_names",
    "whole_second_delay",
]

# ``deliveries`` and ``operational`` (Jenga's own operational webhooks, apart from the
# sender's messages) need PostgreSQL; ``default`` and ``alarms`` don't.
QUEUE_ROLES = ("default", "deliveries", "operational", "alarms")
# The queues whose tasks need PostgreSQL: a worker stops consuming them while it is down.
POSTGRES_QUEUE_ROLES = ("deliveries", "operational")

NOTIFY_TASK = "jenga.alarms.notify"  # worker/tasks/notifications.py; the API and CLI send it
DELIVER_TASK = "jenga.delivery.deliver"  # worker/delivery; the API and the dispatcher send it
DISPATCH_TASK = "jenga.delivery.dispatch"  # worker/delivery; beat sends it
FAN_OUT_TASK = "jenga.delivery.fan_out"  # worker/delivery; the API sends it for big fan-outs
# A message with more deliveries than this is enqueued as one FAN_OUT_TASK, which a worker
# turns into a task per delivery: the sender's request pays one publish, not one per endpoint.
FAN_OUT_DIRECT_MAX = 4
WATCHDOG_TASK = "jenga.watchdog.check"  # worker/tasks/watchdogs.py; beat sends it
SELFTEST_TASK = "jenga.selftest"  # worker/tasks/selftest.py; operators and tests send it
METRICS_PROBE_TASK = "jenga.metrics.probe"  # worker/tasks/metrics_probe.py; operators send it
RETENTION_TASK = "jenga.retention.purge"  # worker/tasks/retention.py; beat sends it
JOBS_TASK = "jenga.jobs.advance"  # worker/jobs/tasks.py; beat sends it
OPERATIONAL_ROUTE_TASK = "jenga.operational.route"  # worker/operational/tasks.py; beat sends it


def queue_names(namespace: str) -> dict[str, str]:
    """The Celery queues of ``namespace``, by role."""
    return {role: f"{namespace}.{role}" for role in QUEUE_ROLES}


def queue_declarations(settings: Settings) -> dict[str, Any]:
    """Celery settings that make every queue Jenga declares (``task_default_queue`` and
    each queue a route, a ``-Q`` or a ``send_task(queue=...)`` names) the
    ``BROKER_QUEUE_TYPE``. The worker's app and :func:`publisher` both take them: a
    publisher that declared a queue as classic which a worker had declared as quorum
    would be refused by RabbitMQ (``PRECONDITION_FAILED``), and the other way round.

    Quorum: each queue's exchange is a topic exchange (its own name, as Celery's
    direct one was), which Celery's native delayed delivery needs; classic: Celery's
    defaults, unchanged, so an existing deployment keeps its queues."""
    if settings.broker_queue_type != "quorum":
        return {}
    return {
        "task_default_queue_type": "quorum",
        "task_default_exchange_type": "topic",
        "task_create_missing_queue_type": "quorum",
        "task_create_missing_queue_exchange_type": "topic",
    }


def whole_second_delay(countdown: float | None, eta: datetime | None, now: datetime) -> int | None:
    """How many seconds a task published with ``countdown`` or ``eta`` waits under
    RabbitMQ's native delayed delivery, which counts in whole seconds and truncates:
    rounded *up*, so a 0.4 s deferral waits 1 s instead of coming straight back. None:
    no delay (nothing asked, or a moment already past)."""
    if eta is not None:
        if eta.tzinfo is None:  # Celery reads a naive ETA in its own timezone (UTC here)
            eta = eta.replace(tzinfo=now.tzinfo)
        countdown = (eta - now).total_seconds()
    if countdown is None or countdown <= 0:
        return None
    return math.ceil(countdown)


def is_redis_broker(broker_url: str) -> bool:
    """Whether ``BROKER_URL`` is Redis (one server or a Sentinel group), not RabbitMQ."""
    return broker_url.startswith(("redis://", "rediss://")) or is_sentinel_url(broker_url)


class KombuBroker(NamedTuple):
    """``BROKER_URL`` as kombu takes it: URL, transport class (None: the URL's scheme
    says) and the transport options the URL needs."""

    url: str
    transport: str | None
    options: dict[str, Any]


SENTINEL_TRANSPORT = "common.redis.kombu_sentinel:FollowingSentinelTransport"


def kombu_broker(broker_url: str, timeout: float) -> KombuBroker:
    """kombu's view of ``broker_url``: unchanged but for Sentinel, whose URL names one
    Sentinel (password, database) while the transport options list them all, name
    the master and bound a question to a Sentinel by ``timeout``."""
    if not is_sentinel_url(broker_url):
        return KombuBroker(broker_url, None, {})
    target = parse_sentinel_url(broker_url)
    sentinel_kwargs = sentinel_client_options(timeout)
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    return KombuBroker(
        target.kombu_url().split(";", 1)[0],
        SENTINEL_TRANSPORT,
        {
            "master_name": target.master_name,
            "sentinels": [list(address) for address in target.sentinels],
            "sentinel_kwargs": sentinel_kwargs,
        },
    )


def publisher(
    settings: Settings, name: str = "jenga-publisher", *, confirm: bool = False
) -> Celery:
    """A Celery client that can only publish, on the workers' broker, keys and
    queues (the same ``global_keyprefix`` as ``worker/celeryconfig.py``), and
    that gives up at once when the broker is down: a broker that accepts but
    never answers must not hold an operator's call or an API request.

    ``confirm``: on RabbitMQ, every publish waits for the broker's confirm (publisher
    confirms), so that a task the broker never took is not taken as sent; each
    ``send_task`` must then pass ``confirm_timeout``. Redis answers every command."""
    from celery import Celery

    timeout = settings.check_timeout_seconds
    kombu = kombu_broker(settings.effective_broker_url, timeout)
    # max_retries 0: kombu's connect otherwise retries until broker_connection_timeout,
    # with a first pause of 2 s, so a broker without a primary held every API request 2 s.
    options: dict[str, Any] = {"visibility_timeout": 3600, "max_retries": 0, **kombu.options}
    if is_redis_broker(settings.effective_broker_url):
        options.update(
            global_keyprefix=RedisKeys(settings.jenga_namespace).broker_prefix(),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    else:
        # AMQP: every wait for the broker (a confirm, a queue's declare, the close of a
        # channel after a failed publish) ends after the timeout; without it a broker
        # that stopped answering held the caller for ever.
        options.update(read_timeout=timeout, write_timeout=timeout)
        if confirm:
            options["confirm_publish"] = True
    sender = Celery(name, set_as_current=False)
    sender.conf.update(
        **queue_declarations(settings),
        broker_url=kombu.url,
        broker_transport=kombu.transport,
        broker_transport_options=options,
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return sender
