"""The body every webhook carries (Standard Webhooks): ``{"type", "timestamp",
"data"}``, fixed when the message is made so that every retry sends, and signs, the
same bytes. The sender's messages (``api/messages.py``) and Jenga's operational
events (``worker/operational``) are built alike.

The API makes a message's body in its INSERT, stamped with the transaction's ``now()``
(one round trip for the whole write): :func:`body_parts` is the body around the
timestamp, and :func:`sql_iso_timestamp` writes a timestamp in SQL as
``datetime.isoformat()`` does for a UTC time (no fraction when the microseconds are 0)."""

from __future__ import annotations

import json
from datetime import datetime

__all__ = ["body_parts", "sql_iso_timestamp", "webhook_body"]


def webhook_body(event_type: str, timestamp: datetime, data_json: str) -> str:
    """The body of a message of ``event_type`` made at ``timestamp`` whose ``data`` is
    the JSON text ``data_json``."""
    head, tail = body_parts(event_type, data_json)
    return f"{head}{timestamp.isoformat()}{tail}"


def body_parts(event_type: str, data_json: str) -> tuple[str, str]:
    """The body before its timestamp, and after it."""
    return f'{{"type":{json.dumps(event_type)},"timestamp":"', f'","data":{data_json}}}'


def sql_iso_timestamp(timestamp: str) -> str:
    """SQL that writes the timestamptz ``timestamp`` (an SQL expression) as
    ``datetime.isoformat()`` writes it in UTC; ``%`` doubled, for statements with
    parameters."""
    utc = f"({timestamp}) AT TIME ZONE 'UTC'"
    return f"""(
        to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN CAST(date_part('microseconds', {utc}) AS bigint) %% 1000000 = 0 THEN ''
                ELSE to_char({utc}, '.US') END
        || '+00:00')"""
