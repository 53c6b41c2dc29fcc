"""Level 4: the one rule for a service name, shared by its circuit breaker and its
concurrency limit (``webhook:hooks.example.com``, ``notify:slack``).

A name becomes part of Redis keys (``{ns}:breaker:{name}``, ``{ns}:limit:{name}``),
so it has no whitespace and no braces (Redis Cluster reads ``{...}`` as a hash
tag); anything else a host name can hold is fine: IPv6 literals, ports, ``%``
zone ids, international names. The length leaves room for any name DNS allows
(253 characters) behind a prefix: :func:`webhook_service` cannot overflow it.
"""

from __future__ import annotations

import re

__all__ = ["SERVICE_NAME_RE", "SERVICE_NAME_RULE", "is_service_name", "webhook_service"]

SERVICE_NAME_RE = re.compile(r"[^\s{}]{1,300}")
SERVICE_NAME_RULE = "use 1-300 characters, no spaces and no braces"


def is_service_name(name: str) -> bool:
    """Whether ``name`` may name a breaker or a limit."""
    return SERVICE_NAME_RE.fullmatch(name) is not None


def webhook_service(host: str) -> str:
    """The breaker and limit of the receivers on ``host`` (an ASCII host name or
    IP literal, as :func:`common.delivery.urls.normalise_url` spells it)."""
    return f"webhook:{host}"
