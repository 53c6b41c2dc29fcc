"""Keeping secrets out of output: URLs with their password masked, and a log
filter that replaces any registered secret value wherever it appears.

The filter is the safety net: code should already log ``mask_url(url)``, but an
exception message from a driver can quote a DSN, and that must not leak either.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """``url`` with the password (and any query token) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
        elif parts.scheme.startswith("redis"):
            # redis://secret@host: a lone userinfo is a password, not a user name.
            netloc = f"{MASK}@{host}"
    path = parts.path
    if parts.scheme.startswith("http") and "hooks.slack.com" in (parts.hostname or ""):
        # The path of a Slack incoming webhook is its credential.
        path = "/" + MASK
    query = MASK if parts.query and "token" in parts.query.lower() else parts.query
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


class SecretRegistry:
    """The secret values of this process, to be scrubbed from any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, value: str | None) -> None:
        # Very short values would mask ordinary words; settings enforce useful lengths.
        if value and len(value) >= 4:
            self._secrets.add(value)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text


SECRETS = SecretRegistry()


class SecretMaskingFilter(logging.Filter):
    """Replaces every registered secret in a log record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is not ours to crash on
            return True
        scrubbed = SECRETS.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            text = SECRETS.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True
