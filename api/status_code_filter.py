"""The ``status_code`` filter of the attempt lists (``…/messages/{id}/attempts`` and
``…/endpoints/{ep}/attempts``): which answers to list.

One parameter, three spellings: an HTTP status (``503``, 100-599: that code), a class
(``2xx`` … ``5xx``: any code of it, as Svix's ``status_code_class``), or ``none``: the
attempts that got no HTTP answer (refused, timed out, TLS failure; their ``error``
says which). Anything else is a 422 naming ``status_code``, from the pattern alone,
which the OpenAPI document states too.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Query
from sqlalchemy import ColumnElement

from common.delivery.models import Attempt

__all__ = ["StatusCodes", "parse_status_code", "status_code_filter"]

PATTERN = r"^([1-5][0-9]{2}|[1-5]xx|none)$"


@dataclass(frozen=True)
class StatusCodes:
    """Codes ``low`` to ``high`` (inclusive); both None: no HTTP answer."""

    low: int | None
    high: int | None

    @property
    def excludes_success(self) -> bool:
        """True when no 2xx matches: only deliveries with a failed attempt can match."""
        return self.low is None or self.high < 200 or self.low >= 300

    def clause(self) -> ColumnElement[bool]:
        """The condition on :class:`Attempt` rows."""
        if self.low is None:
            return Attempt.status_code.is_(None)
        if self.low == self.high:
            return Attempt.status_code == self.low
        return Attempt.status_code.between(self.low, self.high)


def parse_status_code(text: str) -> StatusCodes:
    """``text`` as it matched :data:`PATTERN`: ``none``, ``4xx`` or ``404``."""
    if text == "none":
        return StatusCodes(None, None)
    if text.endswith("xx"):
        low = int(text[0]) * 100
        return StatusCodes(low, low + 99)
    return StatusCodes(int(text), int(text))


def status_code_filter(
    status_code: str | None = Query(
        default=None,
        pattern=PATTERN,
        examples=["503", "5xx", "none"],
        description="Only attempts answered with this HTTP status (100-599), with any of a"
        " class (`1xx`-`5xx`), or `none`: with no HTTP answer (see `error`).",
    ),
) -> StatusCodes | None:
    """The ``?status_code=`` parameter of an attempt list (None: every attempt)."""
    return None if status_code is None else parse_status_code(status_code)
