"""Keyset pagination for the ``/v1`` lists: ``?limit=`` (bounded) and
``?iterator=`` (opaque, from the previous page's ``iterator``), answered as
``{"data": [...], "iterator": "...", "done": false}`` as Svix's lists are.

The cursor is the last row's ``(created_at, id)``; the next page starts right
after it, read through the ``(app_id, created_at, id)`` index, so page 1 000
costs what page 1 does and rows added meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from fastapi import Query
from sqlalchemy import Select, and_, or_

from api.errors import ApiError

__all__ = ["ITERATOR", "decode", "encode", "page", "page_size", "split"]

ITERATOR = Query(
    default=None, max_length=200, description="From the previous page's `iterator`: the next page."
)


def page_size(most: int):
    """The ``?limit=`` parameter of a list: 100 items a page unless asked, at most ``most``."""
    return Query(default=100, ge=1, le=most, description=f"Items per page, 1 to {most}.")


def encode(created_at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode(iterator: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of an iterator; 422 ``invalid_iterator`` when it is not one."""
    try:
        created_at, row_id = base64.urlsafe_b64decode(iterator.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created_at), row_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
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
