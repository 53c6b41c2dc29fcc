"""Level 3: what a notifier is, and how one attempt at it fails.

A notifier is data, not a class to subclass: its name, the setting that turns
it on, the body it sends, and which refusals are final. Adding one is a new
file beside :mod:`.slack` and a line in :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.alarms.store import Transition

__all__ = ["Notifier", "NotifyFailure", "PermanentFailure", "RetryableFailure"]


@dataclass(frozen=True)
class Notifier:
    """``name``: also the task's argument and the breaker ``notify:<name>``;
    ``setting``: the :class:`~common.config.Settings` field holding its URL (a
    secret); ``payload``: the JSON body for a transition; ``final_refusal(status,
    text)``: whether a 4xx answer (other than 408, 425 and 429, always retried)
    means the message will never be accepted."""

    name: str
    setting: str
    payload: Callable[[Transition], dict[str, Any]]
    final_refusal: Callable[[int, str], bool]


class NotifyFailure(Exception):
    """One attempt failed; ``str()`` is safe to log (no URL secrets)."""


class RetryableFailure(NotifyFailure):
    """Worth trying again, after ``retry_after`` seconds when the receiver said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(NotifyFailure):
    """The receiver will never take this message; trying again cannot help."""
