"""No level: the Redis URL forms Jenga accepts, parsed without touching the network.

* ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads them.
* ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/MASTER_NAME[/DB]``:
  a group of Sentinels that say which server is the primary of ``MASTER_NAME``
  now. The password (and user) are the data servers'; Sentinels that want a
  password of their own take ``?sentinel_password=``. The port defaults to 26379.
* ``redis+cluster://[[user]:password@]host[:port][,host[:port]...][?password=...]``:
  some nodes of a Redis Cluster (any of them; the client learns the rest from them).
  The password may stand in the userinfo or in ``?password=`` (``?username=``), so a
  password that does not percent-encode well can still be given. The port defaults
  to 6379; a cluster has one database, so there is no path. Shared state only: kombu
  has no cluster transport, so ``BROKER_URL`` refuses it.

:func:`parse_sentinel_url` and :func:`parse_cluster_url` raise ``ValueError`` with an
operator's message, so a malformed URL stops the process at the config level instead of
failing at the first connect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit

__all__ = [
    "CLUSTER_SCHEME",
    "ClusterURL",
    "SENTINEL_DEFAULT_PORT",
    "SENTINEL_SCHEME",
    "SentinelURL",
    "is_cluster_url",
    "is_sentinel_url",
    "parse_cluster_url",
    "parse_sentinel_url",
]

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_DEFAULT_PORT = 26379
SENTINEL_OPTIONS = ("sentinel_password",)
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_DEFAULT_PORT = 6379
CLUSTER_OPTIONS = ("password", "username")

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


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL: the nodes to start from and the credentials."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def is_cluster_url(url: str) -> bool:
    return url.strip().lower().startswith(CLUSTER_SCHEME + "://")


# Messages name a Sentinel by its position, never quote the text: a password with
# an unencoded '/', '?' or '#' ends up in the host or query part, and errors are printed.
def _parse_host(
    text: str, position: int, what: str = "Sentinel", default_port: int = SENTINEL_DEFAULT_PORT
) -> tuple[str, int]:
    match = _HOST.match(text)
    if not match:
        raise ValueError(f"{what} address {position} is not host or host:port")
    host = match["v6"] or match["name"]
    port_text = match["port"]
    if port_text is None or port_text == "":
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{what} address {position} has no valid port (1-65535)")
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


def parse_cluster_url(url: str) -> ClusterURL:
    """``redis+cluster://:pw@n1:7000,n2:7001`` (or ``...?password=pw``) as a
    :class:`ClusterURL`."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() != CLUSTER_SCHEME:
        raise ValueError(f"not a {CLUSTER_SCHEME}:// URL")
    parts = urlsplit("//" + rest)
    if parts.fragment:
        raise ValueError("Cluster URL has a '#' fragment; percent-encode '#' in a password")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    if not hostlist:
        raise ValueError("Cluster URL names no node (expected host:port[,host:port...])")
    nodes = tuple(
        _parse_host(text.strip(), position, "Cluster node", CLUSTER_DEFAULT_PORT)
        for position, text in enumerate(hostlist.split(","), start=1)
    )
    if parts.path.strip("/"):
        raise ValueError("Cluster URL has a path: a Redis Cluster has one database, drop '/...'")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(CLUSTER_OPTIONS))
    if unknown:
        allowed = ", ".join(CLUSTER_OPTIONS)
        raise ValueError(f"Cluster URL has an unknown option (allowed: {allowed})")
    username, password = _parse_userinfo(userinfo)
    if options.get("password") and password is not None:
        raise ValueError("Cluster URL has a password both before '@' and in ?password=")
    return ClusterURL(
        nodes=nodes,
        username=options.get("username") or username,
        password=options.get("password") or password,
    )
