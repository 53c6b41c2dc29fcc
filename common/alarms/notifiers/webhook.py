"""Level 3: the generic JSON webhook notifier (``ALARM_WEBHOOK_URL``).

Body ``{"type": "alarm.set" | "alarm.clear", "summary": ..., "alarm": {...}}``;
any 4xx (other than 408, 425, 429) is final.
"""

from __future__ import annotations

from typing import Any

from common.alarms.notifiers.message import summary
from common.alarms.notifiers.notifier import Notifier
from common.alarms.store import Transition

__all__ = ["WEBHOOK", "webhook_payload"]


def webhook_payload(transition: Transition) -> dict[str, Any]:
    """Body for the generic JSON webhook: a type plus the whole transition."""
    return {
        "type": f"alarm.{transition.kind}",
        "summary": summary(transition),
        "alarm": transition.to_dict(),
    }


WEBHOOK = Notifier("webhook", "alarm_webhook_url", webhook_payload, lambda status, text: True)
