"""Level 3: one HTTP attempt at telling a notifier about a transition.

:func:`send` makes exactly one attempt and raises :class:`RetryableFailure`
(with the server's ``Retry-After`` when it gave one) or
:class:`PermanentFailure`; retrying, backoff and jitter belong to the caller
(the Celery task in ``worker/tasks/notifications.py``), so a slow or dead
receiver never holds up a watchdog. :func:`classify` is the pure rule that
reads an answer (tested without sockets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import httpx

from common.alarms.notifiers.notifier import NotifyFailure, PermanentFailure, RetryableFailure
from common.alarms.notifiers.registry import notifier_named
from common.alarms.store import Transition
from common.support.retry_after import retry_after_seconds

__all__ = ["MAX_RETRY_AFTER_SECONDS", "USER_AGENT", "classify", "parse_retry_after", "send"]

USER_AGENT = "jenga-alarms/0.1"
MAX_RETRY_AFTER_SECONDS = 3600.0


def _host(url: str) -> str:
    """Where a notifier points, without its path or query (either can be the credential)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header; None when absent or
    unreadable; never negative, capped at an hour."""
    return retry_after_seconds(value, now(), MAX_RETRY_AFTER_SECONDS)


def classify(
    notifier: str,
    status: int,
    headers: Mapping[str, str],
    body: str,
    now: Callable[[], float] = time.time,
) -> NotifyFailure | None:
    """None if the receiver accepted the message, else the failure to raise."""
    text = body.strip()[:100]
    if 200 <= status < 300:
        return None
    if status == 429:
        return RetryableFailure(
            f"{notifier}: rate limited (429)", parse_retry_after(headers.get("retry-after"), now)
        )
    if status >= 500 or status in (408, 425):
        return RetryableFailure(
            f"{notifier}: HTTP {status} {text}", parse_retry_after(headers.get("retry-after"), now)
        )
    if not notifier_named(notifier).final_refusal(status, text):
        return RetryableFailure(f"{notifier}: HTTP {status} {text}")
    return PermanentFailure(f"{notifier}: HTTP {status} {text}")


def send(
    notifier: str,
    url: str,
    transition: Transition,
    timeout: float = 5.0,
    client: httpx.Client | None = None,
) -> None:
    """One attempt at delivering ``transition`` to ``url``; raises a :class:`NotifyFailure`."""
    payload = notifier_named(notifier).payload(transition)
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
