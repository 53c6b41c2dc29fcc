"""Keyset pagination for the ``/v1`` lists: ``?limit=`` (bounded) and
``?iterator=`` (opaque, from the previous page's ``iterator``), answered as
``{"data": [...], "iterator": "...", "done": false}`` as Svix's lists are.

The cursor is the last row's ``(created_at, id)``; the next page starts right
after it, read through the ``(app_id, created_at, id)`` index, so page 1 000
costs what page 1 does and rows added meanwhile never shift a page. Rows that
have a unique name instead (the event-type catalog) page by it
(:func:`page_by_name`).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from fastapi import Query
from sqlalchemy import Select, and_, or_

from api.errors import ApiError

__all__ = [
    "ITERATOR",
    "decode",
    "encode",
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


def encode(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def _text_of(iterator: str) -> str:
    """What an iterator encodes; 422 ``invalid_iterator`` when it is not one of ours."""
    try:
        text = base64.b64decode(iterator.encode(), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeDecodeError, binascii.Error):
        text = ""
    if not text:
        raise ApiError(422, "invalid_iterator", "iterator is not one this API gave")
    return text


def decode(iterator: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of an iterator; 422 ``invalid_iterator`` when it is not one."""
    try:
        created_at, row_id = _text_of(iterator).split("|", 1)
        return datetime.fromisoformat(created_at), row_id
    except ValueError:
        raise ApiError(422, "invalid_iterator", "iterator is not one this API gave") from None


def page(query: Select, model: Any, iterator: str | None, limit: int, newest_first: bool) -> Select:
    """``query`` ordered by ``(created_at, id)`` from after ``iterator``, one row
    more than ``limit`` (to tell whether this is the last page)."""
    created, row_id = model.created_at, model.id
    if iterator is not None:
        after_created, after_id = decode(iterator)
        if newest_first:
            query = query.where(
                or_(created < after_created, and_(created == after_created, row_id < after_id))
            )
        else:
            query = query.where(
                or_(created > after_created, and_(created == after_created, row_id > after_id))
            )
    order = (created.desc(), row_id.desc()) if newest_first else (created, row_id)
    return query.order_by(*order).limit(limit + 1)


def split(rows: list[Any], limit: int) -> tuple[list[Any], str | None, bool]:
    """This page's rows, the next page's iterator and whether this is the last page."""
    done = len(rows) <= limit
    rows = rows[:limit]
    return rows, None if done or not rows else encode(rows[-1].created_at, rows[-1].id), done


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
