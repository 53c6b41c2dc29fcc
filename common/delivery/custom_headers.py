"""An endpoint's custom headers: sent with every delivery (an ``Authorization`` for a
receiver behind a gateway), so they are credentials and are treated as such.

:func:`header_problems` is the rule applied when they are set: names are RFC 9110
tokens, values hold no CR, LF or NUL (no header injection) and are visible ASCII
or spaces, and the headers Jenga itself must own are refused: the signature's
``webhook-*``, the framing ones (``host``, ``content-length``, ``transfer-encoding``,
``connection`` …), ``content-type`` (the body is JSON and signed as sent) and
``user-agent`` (it says the request is from Jenga).
:func:`masked` is what a reader without the right to see them gets.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "MAX_HEADERS", "header_problems", "masked"]

MAX_HEADERS = 20
MAX_NAME_LENGTH = 100
MAX_VALUE_LENGTH = 4096
MASK = "********"

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 section 5.6.2
_VALUE = re.compile(r"^[\x20-\x7e]*$")  # visible ASCII and spaces: no CR, LF, NUL, controls
RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "user-agent",
    }
)


def header_problems(headers: dict[str, str]) -> list[str]:
    """What is wrong with ``headers`` (empty: nothing), one entry per header, naming the
    header and never quoting its value."""
    if len(headers) > MAX_HEADERS:
        return [f"at most {MAX_HEADERS} headers"]
    problems = []
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not _TOKEN.match(name) or len(name) > MAX_NAME_LENGTH:
            problems.append(f"{name!r}: not a header name (an RFC 9110 token, 1-100 characters)")
        elif lower.startswith("webhook-") or lower in RESERVED:
            problems.append(f"{name!r}: set by Jenga itself, not by an endpoint")
        elif lower in seen:
            problems.append(f"{name!r}: given twice (names are case-insensitive)")
        elif not _VALUE.match(value) or len(value) > MAX_VALUE_LENGTH:
            problems.append(
                f"{name!r}: a value is printable ASCII (no CR, LF or control characters),"
                f" at most {MAX_VALUE_LENGTH} characters"
            )
        seen.add(lower)
    return problems


def masked(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with every value replaced by :data:`MASK` (the names stay readable)."""
    return dict.fromkeys(headers, MASK)
