"""No level: the Redis URL forms Jenga accepts, parsed without touching the network.

* ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads them.
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER_NAME[/DB]``:
  a group of Sentinels that say which server is the primary of ``MASTER_NAME``
  now. The password (and user) are the data servers'; Sentinels that want a
  password of their own take ``?sentinel_password=``. The port defaults to 26379.

:func:`parse_sentinel_url` raises ``ValueError`` with an operator's message, so a
malformed URL stops the process at the config level instead of failing at the
first connect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = [
    "SENTINEL_DEFAULT_PORT",
    "SENTINEL_SCHEME",
    "SentinelURL",
    "is_sentinel_url",
    "parse_sentinel_url",
]

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_DEFAULT_PORT = 26379
SENTINEL_OPTIONS = ("sentinel_password",)

_HOST = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<name>[^:\[\]/]+))(?::(?P<port>[^:]*))?$")
_MASTER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # the data servers' (primary and replicas)
    sentinel_password: str | None = None  # the Sentinels' own, when they require one

    def kombu_url(self) -> str:
        """kombu's form: ``sentinel://[user:password@]host:port/db`` per Sentinel, joined
        by ``;`` (the master name goes in the transport options)."""
        userinfo = ""
        if self.password is not None:
            user = quote(self.username or "", safe="")
            userinfo = f"{user}:{quote(self.password, safe='')}@"
        hosts = (f"[{h}]" if ":" in h else h for h, _ in self.sentinels)
        return ";".join(
            f"sentinel://{userinfo}{host}:{port}/{self.db}"
            for host, (_, port) in zip(hosts, self.sentinels, strict=True)
        )


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


# Messages name a Sentinel by its position, never quote the text: a password with
# an unencoded '/', '?' or '#' ends up in the host or query part, and errors are printed.
def _parse_host(text: str, position: int) -> tuple[str, int]:
    match = _HOST.match(text)
    if not match:
        raise ValueError(f"Sentinel address {position} is not host or host:port")
    host = match["v6"] or match["name"]
    port_text = match["port"]
    if port_text is None or port_text == "":
        return host, SENTINEL_DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"Sentinel address {position} has no valid port (1-65535)")
    return host, int(port_text)


def _parse_userinfo(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    if ":" not in userinfo:
        return None, unquote(userinfo)  # redis+sentinel://secret@...: a lone password
    user, _, password = userinfo.partition(":")
    return (unquote(user) or None), unquote(password)


def parse_sentinel_url(url: str) -> SentinelURL:
    """``redis+sentinel://:pw@h1:26379,h2:26379/mymaster/0`` as a :class:`SentinelURL`."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    parts = urlsplit("//" + rest)
    if parts.fragment:
        raise ValueError("Sentinel URL has a '#' fragment; percent-encode '#' in a password")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    if not hostlist:
        raise ValueError("Sentinel URL names no Sentinel (expected host:port[,host:port...])")
    sentinels = tuple(
        _parse_host(text.strip(), position)
        for position, text in enumerate(hostlist.split(","), start=1)
    )
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError("Sentinel URL has no master name (expected .../MASTER_NAME[/DB])")
    if len(segments) > 2:
        raise ValueError("Sentinel URL path must be /MASTER_NAME or /MASTER_NAME/DB")
    master_name = unquote(segments[0])
    if not _MASTER_NAME.match(master_name):
        raise ValueError("Sentinel master name must be 1-64 characters of A-Z, a-z, 0-9, _ . -")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError("Sentinel URL database (after the master name) must be a number")
        db = int(segments[1])
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(SENTINEL_OPTIONS))
    if unknown:
        allowed = ", ".join(SENTINEL_OPTIONS)
        raise ValueError(f"Sentinel URL has an unknown option (allowed: {allowed})")
    username, password = _parse_userinfo(userinfo)
    return SentinelURL(
        sentinels=sentinels,
        master_name=master_name,
        db=db,
        username=username,
        password=password,
        sentinel_password=options.get("sentinel_password") or None,
    )
