"""Level 5: a webhook URL in the one spelling every later step can send.

Customers type URLs with international host names (``https://bücher.example/``),
non-ASCII paths and spaces. HTTP wants ASCII: the host in IDNA (``xn--…``),
the rest percent-encoded. :func:`normalise_url` does that once, when an
endpoint is created or changed (a URL that cannot be spelled so is refused
with the reason), and the worker does it again before each delivery, so a URL
stored before this rule existed is sent or refused, never retried for ever.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from common.delivery.destinations import DestinationError

__all__ = ["normalise_url"]

# RFC 3986's reserved and unreserved characters, and '%' for what is already encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"
# A DNS label as hosts spell it ('_' is not a host name's, but DNS holds such names).
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?")


def normalise_url(url: str) -> str:
    """``url`` with an IDNA host, a lower-case scheme and host, percent-encoded
    path and query, and no fragment (never sent); :class:`DestinationError` when
    it cannot be spelled so."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise DestinationError("not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise DestinationError("only http:// and https:// URLs can receive webhooks")
    host = parts.hostname
    if not host:
        raise DestinationError("URL has no host")
    host = ascii_host(host)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username or parts.password:
        raise DestinationError("URL must not contain a user name or password")
    path = quote(parts.path, safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((parts.scheme.lower(), netloc, path, query, ""))


def ascii_host(host: str) -> str:
    """An IP literal as it is; an ASCII name in lower case; any other name in
    IDNA (UTS #46 mapping). DNS limits apply: labels of at most 63 octets, at
    most 253 in all."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return host
    except ValueError:
        pass
    if host.isascii():
        name = host.lower()
    else:
        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise DestinationError(f"host {host!r} is not a valid domain name ({error})") from None
    labels = name.rstrip(".").split(".")
    if (
        len(name.rstrip(".")) > 253
        or any(not 0 < len(label) <= 63 for label in labels)
        or not all(_LABEL.fullmatch(label) for label in labels)
    ):
        raise DestinationError(
            "host is not a valid domain name (labels of 1-63 letters, digits, '-' or '_',"
            " 253 characters in all)"
        )
    return name
