"""The ``jenga.alarms.notify`` task: deliver one alarm transition to one
notifier (Slack, JSON webhook). :mod:`common.alarms.dispatch` publishes it, one
task per notifier on the ``{ns}.alarms`` queue.

A task per notifier means a slow or dead Slack only delays its own task, never
a watchdog nor the other notifier; the task retries with full-jitter backoff
(or the receiver's ``Retry-After`` on 429) and, being acked late, survives a
worker crash. Only a permanent refusal (Slack's 4xx ``invalid_payload`` and
friends) or running out of retries (about a day) drops a message, and that
is logged as an error.
"""

from __future__ import annotations

import logging

from common.alarms.dispatch import SEND_TIMEOUT_SECONDS, log_notification, retry_delay
from common.alarms.notifiers import PermanentFailure, RetryableFailure, notifier_urls, send
from common.alarms.store import Transition
from common.broker import NOTIFY_TASK
from common.config import get_settings
from common.support.logs import log_event
from worker.app import app
from worker.guarded import GuardedTask

log = logging.getLogger("jenga.alarms")

MAX_RETRIES = 150  # with the 10-minute cap: about a day of trying
MAX_DEFERRALS = 300  # an open breaker defers at most BREAKER_OPEN_MAX_SECONDS: about a day too


@app.task(
    name=NOTIFY_TASK,
    bind=True,
    base=GuardedTask,
    acks_late=True,
    max_retries=MAX_RETRIES,
    ignore_result=True,
    breaker_ignore=(PermanentFailure,),
    max_deferrals=MAX_DEFERRALS,
)
def send_notification(self, notifier: str, transition_data: dict) -> None:
    """Deliver one transition to one notifier; retried on temporary failures.

    Slack and the alarm webhook are services we do not control: each call
    passes the ``notify:<notifier>`` breaker and limit, so a dead Slack costs
    no worker slot (the task is deferred, not retried, while it is open). A
    permanent refusal is our payload's fault and does not count against it."""
    url = notifier_urls(get_settings()).get(notifier)
    transition = Transition.from_dict(transition_data)
    if url is None:
        log_event(
            log,
            "alarm.notify_skipped",
            level=logging.WARNING,
            notifier=notifier,
            alarm_id=transition.alarm_id,
            reason="notifier no longer configured",
        )
        return
    try:
        with self.guard(f"notify:{notifier}"):
            send(notifier, url, transition, timeout=SEND_TIMEOUT_SECONDS)
    except PermanentFailure as error:
        log_notification(
            "alarm.notify_failed", notifier, transition, logging.ERROR, error=str(error)
        )
        return
    except RetryableFailure as error:
        if self.request.retries >= self.max_retries:
            log_notification(
                "alarm.notify_gave_up", notifier, transition, logging.ERROR, error=str(error)
            )
            return
        delay = retry_delay(self.request.retries, error)
        log_notification(
            "alarm.notify_retry",
            notifier,
            transition,
            logging.WARNING,
            error=str(error),
            retry_in_seconds=round(delay, 2),
            attempt=self.request.retries + 1,
        )
        raise self.retry(countdown=delay) from None
    log_notification("alarm.notified", notifier, transition)
