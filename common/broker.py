"""Hand an alarm transition to the worker's notifier tasks, by name.

The API and the ``jenga`` command line set alarms too (an operator forcing a
breaker), but they do not import the worker. They send one
``jenga.alarms.notify`` task per configured notifier to ``{ns}.alarms``, as
the worker's own :func:`worker.tasks.notifications.notify` does, so the message is
retried by a worker however long Slack is away. Celery is imported only when
there is something to send.
"""

from __future__ import annotations

import logging
from typing import Any

from common.alarms.notifiers import notifier_urls
from common.config import Settings
from common.connections.probes import describe_error
from common.redis.keys import RedisKeys
from common.support.logs import log_event

log = logging.getLogger("jenga.alarms")

NOTIFY_TASK = "jenga.alarms.notify"  # worker/tasks/notifications.py


def send_notify_tasks(settings: Settings, transition: Any) -> int:
    """Queue one notify task per configured notifier; returns how many were queued.
    A broker that cannot take them is logged (the alarm itself is already in Redis)."""
    notifiers = list(notifier_urls(settings))
    if not notifiers:
        return 0
    from celery import Celery

    timeout = settings.check_timeout_seconds
    sender = Celery("jenga-notify", broker=settings.effective_broker_url, set_as_current=False)
    # A broker that accepts but never answers must not hold the operator's call (API or CLI).
    sender.conf.broker_connection_timeout = timeout
    if settings.effective_broker_url.startswith(("redis", "rediss")):
        # The worker's queues live under this prefix (worker/celeryconfig.py).
        sender.conf.broker_transport_options = {
            "global_keyprefix": RedisKeys(settings.jenga_namespace).broker_prefix(),
            "socket_timeout": timeout, "socket_connect_timeout": timeout}
    sent = 0
    try:
        for notifier in notifiers:
            sender.send_task(NOTIFY_TASK, (notifier, transition.to_dict()),
                             queue=f"{settings.jenga_namespace}.alarms", retry=False)
            sent += 1
    except Exception as error:  # broker unreachable: say so, never fail the operator's action
        log_event(log, "alarm.notify_enqueue_failed", logging.WARNING, alarm_id=transition.alarm_id,
                  error=describe_error(error))
    finally:
        sender.close()
    return sent
