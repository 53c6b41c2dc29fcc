"""Level 3: every HTTP notifier, by name, and the ones a configuration turns on."""

from __future__ import annotations

from common.alarms.notifiers.notifier import Notifier
from common.alarms.notifiers.slack import SLACK
from common.alarms.notifiers.webhook import WEBHOOK
from common.config import Settings

__all__ = ["NOTIFIERS", "notifier_named", "notifier_urls"]

NOTIFIERS: tuple[Notifier, ...] = (SLACK, WEBHOOK)
_BY_NAME = {notifier.name: notifier for notifier in NOTIFIERS}


def notifier_named(name: str) -> Notifier:
    """The notifier called ``name``; ``KeyError`` for an unknown one."""
    return _BY_NAME[name]


def notifier_urls(settings: Settings) -> dict[str, str]:
    """The HTTP notifiers this configuration turns on, with their URLs (secrets)."""
    urls = {}
    for notifier in NOTIFIERS:
        url = getattr(settings, notifier.setting)
        if url is not None:
            urls[notifier.name] = url.get_secret_value()
    return urls
