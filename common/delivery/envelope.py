"""The body every webhook carries (Standard Webhooks): ``{"type", "timestamp",
"data"}``, fixed when the message is made so that every retry sends, and signs, the
same bytes. The sender's messages (``api/messages.py``) and Jenga's operational
events (``worker/operational``) are built alike."""

from __future__ import annotations

import json
from datetime import datetime

__all__ = ["webhook_body"]


def webhook_body(event_type: str, timestamp: datetime, data_json: str) -> str:
    """The body of a message of ``event_type`` made at ``timestamp`` whose ``data`` is
    the JSON text ``data_json``."""
    return (
        f'{{"type":{json.dumps(event_type)},"timestamp":"{timestamp.isoformat()}",'
        f'"data":{data_json}}}'
    )
