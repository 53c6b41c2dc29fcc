"""Fan-out: which endpoints a message goes to, and what its deliveries add up to.

A message posted to an application goes to every enabled endpoint of it that is
subscribed (:func:`subscribes`): its ``filter_types`` (None: every type) holds the
message's type, and its ``channels`` (None: no filter) share at least one channel
with the message's. A message naming one ``endpoint_id`` goes to that endpoint only,
whatever it subscribes to (the sender asked for it). :data:`FAN_OUT` writes the
deliveries in one statement, in the message's transaction; it is the SQL form of
:func:`subscribes`, and the tests hold the two to the same answers.

:func:`summary` is how a message reads from its deliveries: ``pending`` while any
is, else ``failed`` if any failed, else ``delivered``; ``unrouted`` with none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from common.delivery.models import DELIVERED, FAILED, PENDING, UNROUTED, Delivery

__all__ = ["FAN_OUT", "MAX_CHANNELS", "Summary", "subscribes", "summary"]

MAX_CHANNELS = 10
# Channel names: short, no spaces (Svix's rule).
CHANNEL_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


def subscribes(
    filter_types: Sequence[str] | None,
    endpoint_channels: Sequence[str] | None,
    event_type: str,
    message_channels: Sequence[str] | None,
) -> bool:
    """Whether an endpoint with these subscriptions gets a message of ``event_type``
    sent on ``message_channels`` (when the message names no endpoint)."""
    if filter_types is not None and event_type not in filter_types:
        return False
    if endpoint_channels is not None:
        return bool(set(endpoint_channels) & set(message_channels or ()))
    return True


# One delivery per enabled endpoint the message goes to. A paused endpoint's waits
# (next_attempt_at NULL: common/delivery/pausing.py); the others are due now and
# stamped dispatched, since the API enqueues their tasks right after the commit. All
# dated by the transaction's now(), PostgreSQL's clock, as the worker compares them.
FAN_OUT = """
    INSERT INTO webhook_deliveries
        (id, message_id, endpoint_id, status, created_at, next_attempt_at, dispatched_at)
    SELECT 'dlv_' || replace(CAST(gen_random_uuid() AS text), '-', ''), %(message_id)s, e.id,
           'pending', now(),
           CASE WHEN e.paused_at IS NULL THEN now() END,
           CASE WHEN e.paused_at IS NULL THEN now() END
    FROM webhook_endpoints e
    WHERE e.app_id = %(app_id)s AND NOT e.disabled
      -- The sender's messages go to its endpoints, operational events to operational ones.
      AND e.operational = %(operational)s
      AND CASE WHEN CAST(%(endpoint_id)s AS varchar) IS NOT NULL
               THEN e.id = %(endpoint_id)s
               ELSE (e.filter_types IS NULL OR e.filter_types ? %(event_type)s)
                    AND (e.channels IS NULL
                         OR e.channels ?| CAST(%(channels)s AS text[])) END
    ORDER BY e.created_at, e.id
    RETURNING id, endpoint_id, next_attempt_at, next_attempt_at IS NOT NULL AS due
    """


@dataclass(frozen=True)
class Summary:
    """A message's state, read from its deliveries."""

    status: str
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None


def summary(deliveries: Iterable[Delivery]) -> Summary:
    rows = list(deliveries)
    if not rows:
        return Summary(UNROUTED, 0, None, None, None)
    statuses = {d.status for d in rows}
    status = PENDING if PENDING in statuses else FAILED if FAILED in statuses else DELIVERED
    due = [d.next_attempt_at for d in rows if d.status == PENDING and d.next_attempt_at]
    errors = [d.last_error for d in rows if d.status != DELIVERED and d.last_error]
    return Summary(
        status=status,
        attempt_count=sum(d.attempt_count for d in rows),
        next_attempt_at=min(due, default=None),
        last_error=errors[0] if errors else None,
        delivered_at=(
            max((d.delivered_at for d in rows if d.delivered_at), default=None)
            if status == DELIVERED
            else None
        ),
    )
