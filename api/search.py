"""The filters of the message lists (``…/messages`` and ``…/endpoints/{ep}/messages``):
``event_type`` (exact), ``channel`` (messages sent on it) and ``since``/``until`` (a
window of ``created_at``: since inclusive, until exclusive, RFC 3339 with an offset).
They compose with each other and with the lists' ``status``, ``endpoint_id`` and
pages; :func:`checked_window` is also the window rule of the attempts and stats.

Each is read through an index (migration 0018), so a filtered page costs about what a
plain one does:

* ``event_type``: ``(app_id, event_type, created_at, id)``, walked newest first like
  the plain list's ``(app_id, created_at, id)``;
* ``channel``: a GIN index of ``channels`` (``jsonb_path_ops``, messages with channels
  only), asked with ``@>``. A GIN index has no order, so PostgreSQL takes it for a rare
  channel (its few messages, then sorted) and, for a common one, walks the application's
  messages newest first, where a page is found within a few rows; the column's
  statistics tell it which;
* ``since``/``until``: a bound on whichever of those indexes is read (on an endpoint's
  list, of ``(endpoint_id, created_at, id)``: a delivery is created with its message,
  at the same time).

On an endpoint's list the message filters say "its message is one of the application's
messages with …", so that PostgreSQL may start from either side: the endpoint's
deliveries newest first (a common type), or the type's messages and then each one's
delivery to the endpoint (a rare type).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime
from sqlalchemy import Select, select

from common.delivery.event_types import MESSAGE_TYPE_PATTERN
from common.delivery.fan_out import CHANNEL_PATTERN
from common.delivery.models import Delivery, Message

__all__ = [
    "MessageSearch",
    "TimeWindow",
    "checked_window",
    "field_error",
    "message_search",
    "time_window",
]


def field_error(name: str, message: str) -> RequestValidationError:
    """A 422 ``invalid_request`` naming the query parameter ``name``, in the shape of
    every other invalid field (:mod:`api.errors`)."""
    return RequestValidationError([{"loc": ("query", name), "msg": message, "type": "value"}])


def _utc(name: str, value: datetime | None) -> datetime | None:
    try:
        return None if value is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the year 1 in UTC
        raise field_error(name, "out of range once in UTC") from None


@dataclass(frozen=True)
class TimeWindow:
    """``[since, until)`` in UTC; either end may be open (None)."""

    since: datetime | None = None
    until: datetime | None = None


def checked_window(since: datetime | None, until: datetime | None) -> TimeWindow:
    """The window in UTC; a 422 naming ``until`` when it is not after ``since``."""
    window = TimeWindow(_utc("since", since), _utc("until", until))
    if window.since is not None and window.until is not None and window.until <= window.since:
        raise field_error("until", "must be later than since (until is exclusive)")
    return window


SINCE = Query(
    default=None,
    description="RFC 3339 date-time with an offset: created at or after it (inclusive).",
)
UNTIL = Query(
    default=None,
    description="RFC 3339 date-time with an offset: created before it (exclusive);"
    " later than `since`.",
)


def time_window(
    since: AwareDatetime | None = SINCE, until: AwareDatetime | None = UNTIL
) -> TimeWindow:
    """The ``?since=&until=`` parameters of a list, checked."""
    return checked_window(since, until)


@dataclass(frozen=True)
class MessageSearch:
    """What a message list is narrowed to (None: not narrowed)."""

    event_type: str | None = None
    channel: str | None = None
    window: TimeWindow = TimeWindow()

    def on_messages(self, query: Select) -> Select:
        """``query`` (of :class:`Message`) narrowed."""
        if self.event_type is not None:
            query = query.where(Message.event_type == self.event_type)
        if self.channel is not None:
            query = query.where(Message.channels.contains([self.channel]))
        if self.window.since is not None:
            query = query.where(Message.created_at >= self.window.since)
        if self.window.until is not None:
            query = query.where(Message.created_at < self.window.until)
        return query

    def on_deliveries(self, query: Select, app_id: str) -> Select:
        """``query`` (of one endpoint's :class:`Delivery` rows, of application ``app_id``)
        narrowed to those whose message matches."""
        if self.window.since is not None:
            query = query.where(Delivery.created_at >= self.window.since)
        if self.window.until is not None:
            query = query.where(Delivery.created_at < self.window.until)
        if self.event_type is not None or self.channel is not None:
            # The application's too, though implied: it leads the event-type index.
            messages = MessageSearch(self.event_type, self.channel).on_messages(
                select(Message.id).where(Message.app_id == app_id)
            )
            query = query.where(Delivery.message_id.in_(messages))
        return query


def message_search(
    event_type: str | None = Query(
        default=None,
        min_length=1,
        max_length=200,
        pattern=MESSAGE_TYPE_PATTERN,
        description="Only messages of this event type (exact).",
    ),
    channel: str | None = Query(
        default=None,
        min_length=1,
        max_length=128,
        pattern=CHANNEL_PATTERN,
        description="Only messages sent on this channel (one of their `channels`).",
    ),
    window: TimeWindow = Depends(time_window),
) -> MessageSearch:
    """The ``?event_type=&channel=&since=&until=`` parameters of a message list."""
    return MessageSearch(event_type, channel, window)
