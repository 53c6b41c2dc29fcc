"""Telling people about alarm transitions: what each notifier sends, and one
HTTP attempt at sending it.

Message building and response classification are pure functions (tested
without sockets). :func:`send` makes exactly one attempt and raises
:class:`RetryableFailure` (with the server's ``Retry-After`` when it gave one)
or :class:`PermanentFailure`; retrying, backoff and jitter belong to the
caller (the Celery task in ``worker/tasks/notifications.py``), so a slow or dead
receiver never holds up a watchdog.

Notifiers, by name:

* ``log`` - always on; the transition is logged where it happens.
* ``slack`` - ``SLACK_WEBHOOK_URL``, a Slack incoming webhook, body ``{"text": ...}``.
* ``webhook`` - ``ALARM_WEBHOOK_URL``, any JSON receiver, body :func:`webhook_payload`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from common.alarms.store import Transition
from common.config import Settings
from common.support.retry_after import retry_after_seconds

HTTP_NOTIFIERS = ("slack", "webhook")
USER_AGENT = "jenga-alarms/0.1"
# Slack answers these bodies with 4xx for requests that will never succeed.
SLACK_PERMANENT_ERRORS = {"invalid_payload", "no_text", "no_service", "channel_not_found",
                          "channel_is_archived", "action_prohibited", "posting_to_general_channel_denied",
                          "invalid_token", "team_disabled", "user_not_found"}
MAX_RETRY_AFTER_SECONDS = 3600.0


class NotifyFailure(Exception):
    """One attempt failed; ``str()`` is safe to log (no URL secrets)."""


class RetryableFailure(NotifyFailure):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(NotifyFailure):
    pass


# --- messages ------------------------------------------------------------------

def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summary(transition: Transition) -> str:
    """One line for people: what happened, to what, since when."""
    if transition.kind == "set":
        error = transition.details.get("error")
        reason = f": {error}" if error else ""
        return (f"ALARM SET [{transition.severity}] {transition.alarm_id} - "
                f"{transition.description}{reason} (at {_when(transition.at)})")
    lasted = f" after {_duration(transition.at - transition.set_at)}" if transition.set_at else ""
    return (f"ALARM CLEARED {transition.alarm_id} - {transition.description}"
            f"{lasted} (at {_when(transition.at)})")


def slack_payload(transition: Transition) -> dict[str, Any]:
    """Body for a Slack incoming webhook."""
    icon = ":rotating_light:" if transition.kind == "set" else ":white_check_mark:"
    return {"text": f"{icon} {summary(transition)}"}


def webhook_payload(transition: Transition) -> dict[str, Any]:
    """Body for the generic JSON webhook: a type plus the whole transition."""
    return {"type": f"alarm.{transition.kind}", "summary": summary(transition), "alarm": transition.to_dict()}


PAYLOADS: dict[str, Callable[[Transition], dict[str, Any]]] = {
    "slack": slack_payload,
    "webhook": webhook_payload,
}


def notifier_urls(settings: Settings) -> dict[str, str]:
    """The HTTP notifiers this configuration turns on, with their URLs (secrets)."""
    urls = {}
    if settings.slack_webhook_url is not None:
        urls["slack"] = settings.slack_webhook_url.get_secret_value()
    if settings.alarm_webhook_url is not None:
        urls["webhook"] = settings.alarm_webhook_url.get_secret_value()
    return urls


def _host(url: str) -> str:
    """Where a notifier points, without its path or query (either can be the credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


# --- responses -----------------------------------------------------------------

def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when absent or
    unreadable; never negative, capped at an hour."""
    return retry_after_seconds(value, now(), MAX_RETRY_AFTER_SECONDS)


def classify(notifier: str, status: int, headers: Mapping[str, str], body: str,
             now: Callable[[], float] = time.time) -> NotifyFailure | None:
    """None if the receiver accepted the message, else the failure to raise."""
    text = body.strip()[:100]
    if 200 <= status < 300:
        return None
    if status == 429:
        return RetryableFailure(f"{notifier}: rate limited (429)", parse_retry_after(headers.get("retry-after"), now))
    if status >= 500 or status in (408, 425):
        return RetryableFailure(f"{notifier}: HTTP {status} {text}", parse_retry_after(headers.get("retry-after"), now))
    if notifier == "slack" and text not in SLACK_PERMANENT_ERRORS and status not in (400, 401, 403, 404, 410):
        return RetryableFailure(f"{notifier}: HTTP {status} {text}")
    return PermanentFailure(f"{notifier}: HTTP {status} {text}")


def send(notifier: str, url: str, transition: Transition, timeout: float = 5.0,
         client: httpx.Client | None = None) -> None:
    """One attempt at delivering ``transition`` to ``url``; raises a :class:`NotifyFailure`."""
    payload = PAYLOADS[notifier](transition)
    owned = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)))
    try:
        response = client.post(url, json=payload, headers={"User-Agent": USER_AGENT})
    except httpx.HTTPError as error:
        # httpx messages can quote the URL, whose path is the Slack credential.
        raise RetryableFailure(f"{notifier}: {type(error).__name__} calling {_host(url)}") from None
    finally:
        if owned:
            client.close()
    failure = classify(notifier, response.status_code, response.headers, response.text)
    if failure is not None:
        raise failure
