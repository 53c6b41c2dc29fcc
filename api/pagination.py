"""Keyset pagination for the ``/v1`` lists: ``?limit=`` (bounded) and
``?iterator=`` (opaque, from the previous page's ``iterator``), answered as
``{"data": [...], "iterator": "...", "done": false}`` as Svix's lists are.

The cursor is the last row's position in the list's order, ``(created_at, id)``
for most; the next page starts right after it. The condition is a row comparison,
``(created_at, id) < (:at, :id)``, which PostgreSQL turns into a bound of the index
the list is read through (``(app_id, created_at, id)`` for messages), so page 1 000
costs what page 1 does and rows added meanwhile never shift a page. (Written as
``created_at < :at OR (created_at = :at AND id < :id)`` it is only a filter: a deep
page would read every row before it.)

An iterator names the list it came from (:class:`Keyset`): one from another list,
or one this API never gave, is a 422 ``invalid_iterator``. The same list with other
filters takes it (it is a position in time). Rows that have a unique name instead
(the event-type catalog) page by it (:func:`page_by_name`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import Query
from sqlalchemy import Select, tuple_

from api.errors import ApiError

__all__ = [
    "ITERATOR",
    "Keyset",
    "decode",
    "encode",
    "invalid_iterator",
    "page",
    "page_by_name",
    "page_size",
    "split",
    "split_by_name",
]

ITERATOR = Query(
    default=None, max_length=200, description="From the previous page's `iterator`: the next page."
)


def page_size(most: int):
    """The ``?limit=`` parameter of a list: 100 items a page unless asked, at most ``most``."""
    return Query(default=100, ge=1, le=most, description=f"Items per page, 1 to {most}.")


@dataclass(frozen=True)
class Keyset:
    """One list's order, and its name in the list's iterators (``messages``,
    ``endpoint-attempts``...): rows sorted by a time and an id, newest or oldest first.
    ``parse_id`` reads the id back from an iterator (raising ValueError for one that
    cannot be this list's)."""

    name: str
    newest_first: bool
    parse_id: Callable[[str], Any] = str


def invalid_iterator() -> ApiError:
    return ApiError(
        422, "invalid_iterator", "iterator is not one this API gave for this list; start over"
    )


def encode(keyset: Keyset, at: datetime, row_id: object) -> str:
    text = f"{keyset.name}|{at.isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _text_of(iterator: str) -> str:
    """What an iterator encodes; 422 ``invalid_iterator`` when it is not one of ours."""
    try:
        text = base64.b64decode(iterator.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError, binascii.Error):
        text = ""
    if not text:
        raise invalid_iterator()
    return text


def decode(iterator: str, keyset: Keyset) -> tuple[datetime, Any]:
    """``(time, id)`` of an iterator of ``keyset``'s list; 422 ``invalid_iterator`` when
    it is not one (forged, or another list's)."""
    try:
        name, at, row_id = _text_of(iterator).split("|", 2)
        if name != keyset.name:
            raise ValueError(name)
        return datetime.fromisoformat(at), keyset.parse_id(row_id)
    except ValueError:
        raise invalid_iterator() from None


def page(
    query: Select, keyset: Keyset, at: Any, row_id: Any, iterator: str | None, limit: int
) -> Select:
    """``query`` ordered by the columns ``(at, row_id)`` from after ``iterator``, one row
    more than ``limit`` (to tell whether this is the last page)."""
    if iterator is not None:
        after_at, after_id = decode(iterator, keyset)
        position, after = tuple_(at, row_id), tuple_(after_at, after_id)
        query = query.where(position < after if keyset.newest_first else position > after)
    order = (at.desc(), row_id.desc()) if keyset.newest_first else (at, row_id)
    return query.order_by(*order).limit(limit + 1)


def split(
    rows: list[Any],
    limit: int,
    keyset: Keyset,
    position: Callable[[Any], tuple[datetime, object]] = lambda row: (row.created_at, row.id),
) -> tuple[list[Any], str | None, bool]:
    """This page's rows, the next page's iterator (from the last row's ``position``)
    and whether this is the last page."""
    done = len(rows) <= limit
    rows = rows[:limit]
    return rows, None if done or not rows else encode(keyset, *position(rows[-1])), done


def page_by_name(query: Select, name: Any, iterator: str | None, limit: int) -> Select:
    """``query`` ordered by the unique column ``name`` from after ``iterator`` (a list
    whose rows are named, not created in an order: the event-type catalog)."""
    if iterator is not None:
        query = query.where(name > _text_of(iterator))
    return query.order_by(name).limit(limit + 1)


def split_by_name(rows: list[Any], limit: int) -> tuple[list[Any], str | None, bool]:
    """:func:`split` for :func:`page_by_name`'s rows (which have a ``name``)."""
    done = len(rows) <= limit
    rows = rows[:limit]
    last = None if done or not rows else base64.urlsafe_b64encode(rows[-1].name.encode()).decode()
    return rows, last, done
