"""Operational webhooks: Jenga telling the sender about its endpoints.

The events, with Svix's names:

* ``endpoint.disabled``: automatically (a 410, or ``ENDPOINT_DISABLE_AFTER_DAYS`` of
  nothing but failures; ``trigger`` ``automatic``) or through the API (``manual``).
* ``endpoint.failing``: every attempt has failed for ``ENDPOINT_FAILING_AFTER_SECONDS``;
  once per run of failures.
* ``endpoint.recovered``: the first success after ``endpoint.failing`` was sent.
* ``message.attempt.exhausted``: a delivery ended ``failed`` after its attempts (its
  schedule ran out, the receiver stayed unavailable past it, or its attempts were never
  recorded).

Who gets them: the application's operational endpoints (``operational``, subscribed
by ``filter_types`` as any endpoint) and those of the application
``OPERATIONS_APP_ID``, which get every application's. An event becomes a message of
each of those applications, signed, retried, guarded by breaker, limit and rate like
any other, but on its own queue (``{ns}.operational``), so that a backlog of the
sender's messages does not hold back the news of it. Never about an operational
endpoint: one that fails tells only the worker's log, so no event can cause another.

Each event is decided in the statement that makes the change it reports (the
attempt's record, ``worker/delivery/queries.py``; the API's disable) and written there
to ``webhook_operational_events``, so none is lost or sent for a change that was rolled
back; ``worker/operational`` turns them into messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from common.delivery.models import Endpoint, OperationalEvent

__all__ = [
    "ENDPOINT_DISABLED",
    "ENDPOINT_FAILING",
    "ENDPOINT_RECOVERED",
    "MESSAGE_ATTEMPT_EXHAUSTED",
    "OPERATIONAL_EVENT_TYPES",
    "disabled_through_api",
]

ENDPOINT_DISABLED = "endpoint.disabled"
ENDPOINT_FAILING = "endpoint.failing"
ENDPOINT_RECOVERED = "endpoint.recovered"
MESSAGE_ATTEMPT_EXHAUSTED = "message.attempt.exhausted"
OPERATIONAL_EVENT_TYPES = (
    ENDPOINT_DISABLED,
    ENDPOINT_FAILING,
    ENDPOINT_RECOVERED,
    MESSAGE_ATTEMPT_EXHAUSTED,
)


def _stamp(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC, as the events written by SQL say it (``worker/delivery/queries.py``)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def disabled_through_api(endpoint: Endpoint, now: datetime) -> OperationalEvent | None:
    """The ``endpoint.disabled`` event of an endpoint an API call disables (None for an
    operational one: no event is about those)."""
    if endpoint.operational:
        return None
    data: dict[str, Any] = {
        "app_id": endpoint.app_id,
        "endpoint_id": endpoint.id,
        "endpoint_uid": endpoint.uid,
        "trigger": "manual",
        "reason": endpoint.disabled_reason,
        "failing_since": _stamp(endpoint.failing_since),
        "disabled_at": _stamp(now),
    }
    return OperationalEvent(app_id=endpoint.app_id, event_type=ENDPOINT_DISABLED, data=data)
