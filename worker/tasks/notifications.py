"""Alarm notifications: each transition is logged where it happens, then sent
to every configured notifier (Slack, JSON webhook) by its own Celery task on
the ``{ns}.alarms`` queue.

A task per notifier means a slow or dead Slack only delays its own task, never
a watchdog nor the other notifier; the task retries with full-jitter backoff
(or the receiver's ``Retry-After`` on 429) and, being acked late, survives a
worker crash. Only a permanent refusal (Slack's 4xx ``invalid_payload`` and
friends) or running out of retries (about a day) drops a message, and that
is logged as an error.

When the broker cannot carry the task (the broker, or Redis serving as the
broker, is the thing that is down), :func:`notify` sends directly from a
background thread of this process, with the same retry rule.
"""

from __future__ import annotations

import logging
import threading
import time

from common.alarms.notifiers import PermanentFailure, RetryableFailure, notifier_urls, send, summary
from common.alarms.store import Transition
from common.config import get_settings
from common.connections.probes import describe_error
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from worker.app import app
from worker.guarded import GuardedTask

log = logging.getLogger("jenga.alarms")

NOTIFY_TASK = "jenga.alarms.notify"
SEND_TIMEOUT_SECONDS = 5.0
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 600.0
MAX_RETRIES = 150  # with the 10-minute cap: about a day of trying
MAX_DEFERRALS = 300  # an open breaker defers at most BREAKER_OPEN_MAX_SECONDS: about a day too
DIRECT_MAX_ATTEMPTS = 8  # in-process fallback: a few minutes, then give up loudly
ENQUEUE_TIMEOUT_SECONDS = 2.0


def log_transition(transition: Transition) -> None:
    """The "log" notifier: always on."""
    level = logging.WARNING if transition.kind == "set" else logging.INFO
    log_event(log, f"alarm.{transition.kind}", level=level, alarm_id=transition.alarm_id,
              severity=transition.severity, summary=summary(transition))


def retry_delay(attempt: int, failure: RetryableFailure) -> float:
    """The receiver's ``Retry-After`` when it gave one, else full-jitter backoff."""
    if failure.retry_after is not None:
        return failure.retry_after
    return full_jitter_backoff(attempt, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)


def notify(transition: Transition, *, direct: bool = False) -> None:
    """Log ``transition`` and enqueue one delivery task per configured notifier.

    ``direct=True`` skips the broker (use it when the broker is known to be down)."""
    log_transition(transition)
    settings = get_settings()
    queue = f"{settings.jenga_namespace}.alarms"
    for notifier in notifier_urls(settings):
        if not direct:
            try:
                send_notification.apply_async(
                    (notifier, transition.to_dict()), queue=queue, retry=True,
                    retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                                  "timeout": ENQUEUE_TIMEOUT_SECONDS},
                )
                continue
            except Exception as error:  # broker unreachable: fall back rather than lose it
                log_event(log, "alarm.notify_enqueue_failed", level=logging.WARNING, notifier=notifier,
                          alarm_id=transition.alarm_id, error=describe_error(error))
        send_in_background(notifier, transition)


def send_in_background(notifier: str, transition: Transition) -> threading.Thread:
    """Deliver from a daemon thread of this process, retrying with backoff."""
    thread = threading.Thread(target=_send_directly, args=(notifier, transition),
                              name=f"jenga-notify-{notifier}", daemon=True)
    thread.start()
    return thread


def _log(event: str, notifier: str, transition: Transition, level: int = logging.INFO, **fields) -> None:
    """One notification event, with the fields every such event carries."""
    log_event(log, event, level=level, notifier=notifier, alarm_id=transition.alarm_id, kind=transition.kind, **fields)


def _send_directly(notifier: str, transition: Transition) -> None:
    for attempt in range(DIRECT_MAX_ATTEMPTS):
        url = notifier_urls(get_settings()).get(notifier)
        if url is None:
            return
        try:
            send(notifier, url, transition, timeout=SEND_TIMEOUT_SECONDS)
        except PermanentFailure as error:
            _log("alarm.notify_failed", notifier, transition, logging.ERROR, error=str(error))
            return
        except RetryableFailure as error:
            if attempt + 1 >= DIRECT_MAX_ATTEMPTS:
                break  # give up now, not after one more wait
            delay = retry_delay(attempt, error)
            _log("alarm.notify_retry", notifier, transition, logging.WARNING, error=str(error),
                 retry_in_seconds=round(delay, 2), direct=True)
            time.sleep(delay)
            continue
        _log("alarm.notified", notifier, transition, direct=True)
        return
    _log("alarm.notify_gave_up", notifier, transition, logging.ERROR, direct=True)


@app.task(name=NOTIFY_TASK, bind=True, base=GuardedTask, acks_late=True, max_retries=MAX_RETRIES,
          ignore_result=True, breaker_ignore=(PermanentFailure,), max_deferrals=MAX_DEFERRALS)
def send_notification(self, notifier: str, transition_data: dict) -> None:
    """Deliver one transition to one notifier; retried on temporary failures.

    Slack and the alarm webhook are services we do not control: each call
    passes the ``notify:<notifier>`` breaker and limit, so a dead Slack costs
    no worker slot (the task is deferred, not retried, while it is open). A
    permanent refusal is our payload's fault and does not count against it."""
    url = notifier_urls(get_settings()).get(notifier)
    transition = Transition.from_dict(transition_data)
    if url is None:
        log_event(log, "alarm.notify_skipped", level=logging.WARNING, notifier=notifier,
                  alarm_id=transition.alarm_id, reason="notifier no longer configured")
        return
    try:
        with self.guard(f"notify:{notifier}"):
            send(notifier, url, transition, timeout=SEND_TIMEOUT_SECONDS)
    except PermanentFailure as error:
        _log("alarm.notify_failed", notifier, transition, logging.ERROR, error=str(error))
        return
    except RetryableFailure as error:
        if self.request.retries >= self.max_retries:
            _log("alarm.notify_gave_up", notifier, transition, logging.ERROR, error=str(error))
            return
        delay = retry_delay(self.request.retries, error)
        _log("alarm.notify_retry", notifier, transition, logging.WARNING, error=str(error),
             retry_in_seconds=round(delay, 2), attempt=self.request.retries + 1)
        raise self.retry(countdown=delay) from None
    _log("alarm.notified", notifier, transition)
