"""Level 3: handing an alarm transition to the people who must hear of it.

Each transition is logged where it happens, then sent to every configured
notifier (Slack, JSON webhook) as one ``jenga.alarms.notify`` task on the
``{ns}.alarms`` queue, published by name (:data:`common.broker.NOTIFY_TASK`):
a worker runs it, with its breaker, limit and retries
(``worker/tasks/notifications.py``).

* :func:`notify` is what the worker's watchdogs and breakers call. When the
  broker cannot take the task (it, or the Redis serving as the broker, is what
  is down), it sends directly from a background thread of this process, with
  the same retry rule, rather than lose the news.
* :func:`send_notify_tasks` is what the API and the command line call: queue
  the tasks or say they could not, never hold the operator's request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from common.alarms.notifiers import PermanentFailure, RetryableFailure, notifier_urls, send, summary
from common.alarms.store import Transition
from common.broker import NOTIFY_TASK, publisher, queue_names
from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "log_transition",
    "notifiers_for",
    "notify",
    "retry_delay",
    "send_in_background",
    "send_notify_tasks",
]

log = logging.getLogger("jenga.alarms")

SEND_TIMEOUT_SECONDS = 5.0
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 600.0
DIRECT_MAX_ATTEMPTS = 8  # in-process fallback: a few minutes, then give up loudly
ENQUEUE_TIMEOUT_SECONDS = 2.0
ENQUEUE_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "timeout": ENQUEUE_TIMEOUT_SECONDS,
}


SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def notifiers_for(transition: Transition, settings: Settings) -> list[str]:
    """The configured notifiers that hear of ``transition``: all of them when its
    severity reaches ``ALARM_NOTIFY_MIN_SEVERITY``, none otherwise (it is logged
    and kept in the store all the same)."""
    rank = SEVERITY_RANK.get(transition.severity, SEVERITY_RANK["critical"])
    if rank < SEVERITY_RANK[settings.alarm_notify_min_severity]:
        return []
    return list(notifier_urls(settings))


def log_transition(transition: Transition) -> None:
    """The "log" notifier: always on."""
    level = logging.WARNING if transition.kind == "set" else logging.INFO
    log_event(
        log,
        f"alarm.{transition.kind}",
        level=level,
        alarm_id=transition.alarm_id,
        severity=transition.severity,
        summary=summary(transition),
    )


def retry_delay(attempt: int, failure: RetryableFailure) -> float:
    """The receiver's ``Retry-After`` when it gave one, else full-jitter backoff."""
    if failure.retry_after is not None:
        return failure.retry_after
    return full_jitter_backoff(attempt, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)


def log_notification(
    event: str, notifier: str, transition: Transition, level: int = logging.INFO, **fields
) -> None:
    """One notification event, with the fields every such event carries."""
    log_event(
        log,
        event,
        level=level,
        notifier=notifier,
        alarm_id=transition.alarm_id,
        kind=transition.kind,
        **fields,
    )


def notify(transition: Transition, *, direct: bool = False, app: Celery | None = None) -> None:
    """Log ``transition`` and enqueue one notify task per configured notifier.

    ``app`` publishes (default: the current Celery app, the worker's own in a
    worker process); ``direct=True`` skips the broker (use it when the broker
    is known to be down)."""
    log_transition(transition)
    settings = get_settings()
    queue = queue_names(settings.jenga_namespace)["alarms"]
    for notifier in notifiers_for(transition, settings):
        if not direct:
            try:
                _sender(app).send_task(
                    NOTIFY_TASK,
                    (notifier, transition.to_dict()),
                    queue=queue,
                    retry=True,
                    retry_policy=ENQUEUE_RETRY_POLICY,
                )
                continue
            except Exception as error:  # broker unreachable: fall back rather than lose it
                log_event(
                    log,
                    "alarm.notify_enqueue_failed",
                    level=logging.WARNING,
                    notifier=notifier,
                    alarm_id=transition.alarm_id,
                    error=describe_error(error),
                )
        send_in_background(notifier, transition)


def _sender(app: Celery | None) -> Celery:
    if app is not None:
        return app
    from celery import current_app

    return current_app


def send_in_background(notifier: str, transition: Transition) -> threading.Thread:
    """Deliver from a daemon thread of this process, retrying with backoff."""
    thread = threading.Thread(
        target=_send_directly,
        args=(notifier, transition),
        name=f"jenga-notify-{notifier}",
        daemon=True,
    )
    thread.start()
    return thread


def _send_directly(notifier: str, transition: Transition) -> None:
    for attempt in range(DIRECT_MAX_ATTEMPTS):
        url = notifier_urls(get_settings()).get(notifier)
        if url is None:
            return
        try:
            send(notifier, url, transition, timeout=SEND_TIMEOUT_SECONDS)
        except PermanentFailure as error:
            log_notification(
                "alarm.notify_failed", notifier, transition, logging.ERROR, error=str(error)
            )
            return
        except RetryableFailure as error:
            if attempt + 1 >= DIRECT_MAX_ATTEMPTS:
                break  # give up now, not after one more wait
            delay = retry_delay(attempt, error)
            log_notification(
                "alarm.notify_retry",
                notifier,
                transition,
                logging.WARNING,
                error=str(error),
                retry_in_seconds=round(delay, 2),
                direct=True,
            )
            time.sleep(delay)
            continue
        log_notification("alarm.notified", notifier, transition, direct=True)
        return
    log_notification("alarm.notify_gave_up", notifier, transition, logging.ERROR, direct=True)


def send_notify_tasks(settings: Settings, transition: Transition) -> int:
    """Queue one notify task per configured notifier; returns how many were queued.
    A broker that cannot take them is logged (the alarm itself is already in Redis)."""
    notifiers = notifiers_for(transition, settings)
    if not notifiers:
        return 0
    sender = publisher(settings, "jenga-notify")
    queue = queue_names(settings.jenga_namespace)["alarms"]
    sent = 0
    try:
        for notifier in notifiers:
            sender.send_task(
                NOTIFY_TASK, (notifier, transition.to_dict()), queue=queue, retry=False
            )
            sent += 1
    except Exception as error:  # broker unreachable: say so, never fail the operator's action
        log_event(
            log,
            "alarm.notify_enqueue_failed",
            logging.WARNING,
            alarm_id=transition.alarm_id,
            error=describe_error(error),
        )
    finally:
        sender.close()
    return sent
