"""Level 3: telling people about alarm transitions over HTTP, one notifier per file.

* ``log`` - always on; the transition is logged where it happens
  (``worker/tasks/notifications.py``), not here.
* ``slack`` (:mod:`.slack`) - ``SLACK_WEBHOOK_URL``, a Slack incoming webhook.
* ``webhook`` (:mod:`.webhook`) - ``ALARM_WEBHOOK_URL``, any JSON receiver.

What they share: :class:`~.notifier.Notifier` (what a notifier is) and the
failures of an attempt, :func:`~.message.summary` (the line people read),
:mod:`.registry` (which exist, which the settings turn on) and :func:`~.attempt.send`
(exactly one HTTP attempt; retrying, backoff and jitter belong to the caller,
so a slow or dead receiver never holds up a watchdog).
"""

from common.alarms.notifiers.attempt import classify, parse_retry_after, send
from common.alarms.notifiers.message import summary
from common.alarms.notifiers.notifier import (
    Notifier,
    NotifyFailure,
    PermanentFailure,
    RetryableFailure,
)
from common.alarms.notifiers.registry import NOTIFIERS, notifier_named, notifier_urls
from common.alarms.notifiers.slack import slack_payload
from common.alarms.notifiers.webhook import webhook_payload

__all__ = [
    "NOTIFIERS",
    "Notifier",
    "NotifyFailure",
    "PermanentFailure",
    "RetryableFailure",
    "classify",
    "notifier_named",
    "notifier_urls",
    "parse_retry_after",
    "send",
    "slack_payload",
    "summary",
    "webhook_payload",
]
