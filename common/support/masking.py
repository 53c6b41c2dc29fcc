"""Keeping secrets out of output: URLs with their password (in the userinfo or
in the query string) masked, and a log filter that replaces any registered
secret value wherever it appears.

The filter is the safety net: code should already log ``mask_url(url)``, but an
exception message from a driver can quote a DSN, and that must not leak either.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

# Query parameters that carry a credential, by name (lower-case, without "_" and "-"):
# libpq's password and sslpassword, redis-py's password, the token, key, secret and
# signature (Azure's sig) of HTTP APIs. libpq's sslkey names a file, not a secret, but
# masking a path is harmless and a missed secret is not.
SECRET_QUERY_NAME = re.compile(
    r"(pass|passwd|password|pwd|secret|token|key|auth|signature|credentials?|^sig)$"
)


def is_secret_query_name(name: str) -> bool:
    """Whether the query parameter ``name`` (as written in a URL) holds a credential."""
    plain = unquote(name).strip().lower().replace("_", "").replace("-", "")
    return SECRET_QUERY_NAME.search(plain) is not None


def _query_fields(query: str) -> list[tuple[str, str | None]]:
    """Each ``name=value`` field of a query string as written, with its raw value
    when the name holds a credential (else None)."""
    fields = []
    for field in query.split("&") if query else []:
        name, equals, value = field.partition("=")
        fields.append((field, value if equals and value and is_secret_query_name(name) else None))
    return fields


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` holds (its password, its credential query values), as
    written and decoded, for the log scrubber."""
    try:
        parts = urlsplit(url)
        password = parts.password
        if password is None and parts.scheme.startswith("redis"):
            password = parts.username  # redis://secret@host, as in mask_url
    except ValueError:
        return []
    raw = [password] if password else []
    raw += [value for _, value in _query_fields(parts.query) if value is not None]
    return list(dict.fromkeys(form for value in raw for form in (value, unquote(value))))


def mask_url(url: str) -> str:
    """``url`` with the password and every credential query parameter (``?password=``,
    ``sslpassword=``, ``token=``...) replaced by ``***``."""
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
    # Field by field, so that the other parameters stay exactly as written.
    query = "&".join(
        field if value is None else f"{field.partition('=')[0]}={MASK}"
        for field, value in _query_fields(parts.query)
    )
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
