"""Where webhooks may go: the SSRF policy.

A webhook URL is typed by a customer, and our workers sit inside our network.
Without a policy, ``http://169.254.169.254/`` (cloud metadata),
``http://localhost:5432`` or ``http://10.0.0.5/admin`` would make us fetch our
own secrets for them. So a destination is refused unless every address its
host resolves to is globally routable, checked when an endpoint is created or
updated *and* again at each delivery (DNS can change in between; the worker
then connects to the very address it checked, see ``worker/delivery/post.py``).

``ALLOW_PRIVATE_DESTINATIONS=true`` lifts the address rule for local
development and tests; settings refuse it when ``JENGA_ENV=production``.

:func:`refusal_for_address` is the pure rule; :func:`resolve_destination` adds DNS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL_LENGTH = 2048
# Metadata services that sit on otherwise ordinary-looking addresses.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("168.63.129.16"),  # Azure's WireServer (a public address)
}


class DestinationError(ValueError):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def check_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute http(s) URL, or :class:`DestinationError`."""
    if len(url) > MAX_URL_LENGTH:
        raise DestinationError(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise DestinationError("not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationError("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise DestinationError("URL has no host")
    if parts.username or parts.password:
        raise DestinationError("URL must not contain a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def refusal_for_address(address: IPAddress) -> str | None:
    """Why webhooks may not go to ``address`` (None: they may)."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 host: judge that one.
        # ::ffff:127.0.0.1 is 127.0.0.1; 6to4 (2002::/16) and Teredo (2001::/32) embed one.
        # Mapped and 6to4 addresses are judged by the IPv4 host alone, on every Python
        # (3.13's ipaddress calls all of 2002::/16 private, 3.11's none of it); a Teredo
        # address is refused when its client is, and judged as IPv6 otherwise.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refusal_for_address(embedded)
        teredo_client = (address.teredo or (None, None))[1]
        if teredo_client is not None and refusal_for_address(teredo_client):
            return refusal_for_address(teredo_client)
        if address.is_site_local:  # fec0::/10: deprecated, but still routed inside some networks
            return "a site-local address"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    ):
        return "not a public address"
    return None


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, via the system resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DestinationError(f"host {host!r} does not resolve ({error})") from None
    return [info[4][0] for info in infos]


def resolve_destination(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> Destination:
    """The checked destination of ``url``: every address it resolves to must be
    allowed (one private address among public ones is enough to refuse, or an
    attacker's DNS could alternate between them)."""
    scheme, host, port = check_url(url)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    raw = [str(literal)] if literal is not None else resolver(host, port)
    addresses = tuple(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in raw))
    if not addresses:
        raise DestinationError(f"host {host!r} has no address")
    if not allow_private:
        for address in addresses:
            reason = refusal_for_address(address)
            if reason:
                raise DestinationError(
                    f"{host} resolves to {address}, {reason}; webhooks only go to public addresses"
                    " (ALLOW_PRIVATE_DESTINATIONS=true allows others outside production)"
                )
    return Destination(scheme, host, port, addresses)
