"""No level: what the worker and its publishers agree on through the broker.

* Queue names (``{ns}.default``, ``{ns}.deliveries``, ``{ns}.alarms``) and the
  names of the tasks that are sent by name (by beat, the API, the ``jenga``
  command line, operators), so nothing needs to import the worker to publish.
* :func:`publisher`: the one publish-only Celery client (the API's delivery
  enqueue, the operator's notifications from the API and the command line).
* :func:`send_notify_tasks`: one ``jenga.alarms.notify`` task per configured
  notifier, as the worker's own :func:`worker.tasks.notifications.notify`
  sends, so a worker retries it however long Slack is away.

Celery is imported only when a client is built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from common.alarms.notifiers import notifier_urls
from common.config import Settings
from common.connections.probes import describe_error
from common.redis.keys import RedisKeys
from common.support.logs import log_event

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "DELIVER_TASK",
    "DISPATCH_TASK",
    "METRICS_PROBE_TASK",
    "NOTIFY_TASK",
    "QUEUE_ROLES",
    "SELFTEST_TASK",
    "WATCHDOG_TASK",
    "publisher",
    "queue_names",
    "send_notify_tasks",
]

log = logging.getLogger("jenga.alarms")

# ``deliveries`` needs PostgreSQL; ``default`` and ``alarms`` don't.
QUEUE_ROLES = ("default", "deliveries", "alarms")

NOTIFY_TASK = "jenga.alarms.notify"  # worker/tasks/notifications.py; the API and CLI send it
DELIVER_TASK = "jenga.delivery.deliver"  # worker/delivery; the API and the dispatcher send it
DISPATCH_TASK = "jenga.delivery.dispatch"  # worker/delivery; beat sends it
WATCHDOG_TASK = "jenga.watchdog.check"  # worker/tasks/watchdogs.py; beat sends it
SELFTEST_TASK = "jenga.selftest"  # worker/tasks/selftest.py; operators and tests send it
METRICS_PROBE_TASK = "jenga.metrics.probe"  # worker/tasks/metrics_probe.py; operators send it


def queue_names(namespace: str) -> dict[str, str]:
    """The Celery queues of ``namespace``, by role."""
    return {role: f"{namespace}.{role}" for role in QUEUE_ROLES}


def publisher(settings: Settings, name: str = "jenga-publisher") -> Celery:
    """A Celery client that can only publish, on the workers' broker, keys and
    queues (the same ``global_keyprefix`` as ``worker/celeryconfig.py``), and
    that gives up at once when the broker is down: a broker that accepts but
    never answers must not hold an operator's call or an API request."""
    from celery import Celery

    timeout = settings.check_timeout_seconds
    options: dict[str, Any] = {"visibility_timeout": 3600}
    if settings.effective_broker_url.startswith(("redis", "rediss")):
        options.update(global_keyprefix=RedisKeys(settings.jenga_namespace).broker_prefix(),
                       socket_timeout=timeout, socket_connect_timeout=timeout)
    sender = Celery(name, set_as_current=False)
    sender.conf.update(
        broker_url=settings.effective_broker_url,
        broker_transport_options=options,
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return sender


def send_notify_tasks(settings: Settings, transition: Any) -> int:
    """Queue one notify task per configured notifier; returns how many were queued.
    A broker that cannot take them is logged (the alarm itself is already in Redis)."""
    notifiers = list(notifier_urls(settings))
    if not notifiers:
        return 0
    sender = publisher(settings, "jenga-notify")
    queue = queue_names(settings.jenga_namespace)["alarms"]
    sent = 0
    try:
        for notifier in notifiers:
            sender.send_task(NOTIFY_TASK, (notifier, transition.to_dict()), queue=queue,
                             retry=False)
            sent += 1
    except Exception as error:  # broker unreachable: say so, never fail the operator's action
        log_event(log, "alarm.notify_enqueue_failed", logging.WARNING,
                  alarm_id=transition.alarm_id, error=describe_error(error))
    finally:
        sender.close()
    return sent
