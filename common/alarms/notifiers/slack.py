"""Level 3: the Slack notifier (``SLACK_WEBHOOK_URL``, an incoming webhook).

Body ``{"text": ...}``. Slack answers some requests that will never succeed
with a 4xx and an error word in the body; those, and 400/401/403/404/410, are
final. Any other 4xx is retried.
"""

from __future__ import annotations

from typing import Any

from common.alarms.notifiers.message import summary
from common.alarms.notifiers.notifier import Notifier
from common.alarms.store import Transition

__all__ = ["SLACK", "SLACK_PERMANENT_ERRORS", "slack_payload"]

SLACK_PERMANENT_ERRORS = frozenset(
    {
        "invalid_payload",
        "no_text",
        "no_service",
        "channel_not_found",
        "channel_is_archived",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "invalid_token",
        "team_disabled",
        "user_not_found",
    }
)
FINAL_STATUSES = (400, 401, 403, 404, 410)


def slack_payload(transition: Transition) -> dict[str, Any]:
    """Body for a Slack incoming webhook."""
    icon = ":rotating_light:" if transition.kind == "set" else ":white_check_mark:"
    return {"text": f"{icon} {summary(transition)}"}


def _final_refusal(status: int, text: str) -> bool:
    return text in SLACK_PERMANENT_ERRORS or status in FINAL_STATUSES


SLACK = Notifier("slack", "slack_webhook_url", slack_payload, _final_refusal)
