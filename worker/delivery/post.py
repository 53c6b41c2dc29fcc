"""Level 5: one webhook POST, sent to the address the SSRF check approved,
never raising for what the receiver or the network does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore

from common.connections.probes import describe_error
from common.delivery.destinations import Destination
from common.delivery.retry_schedule import Outcome, parse_retry_after
from worker.delivery.deadline import attempt_deadline

__all__ = [
    "EXCERPT_BYTES",
    "EXCERPT_CHARS",
    "HTTP_ERRORS",
    "USER_AGENT",
    "AttemptResult",
    "pinned_url",
    "post",
]

EXCERPT_BYTES = 1024
EXCERPT_CHARS = 500
USER_AGENT = "Jenga-Webhooks/0.1"
# What the network or the receiver can do to a request (httpcore has no common base class).
HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    started_at: datetime
    duration_ms: int
    excerpt: str | None


def pinned_url(url: str, destination: Destination) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The request to make so the connection goes to the address the SSRF
    check approved, not to whatever DNS answers a moment later: the URL names
    that address; ``Host`` and TLS SNI (so certificate checks) keep the name."""
    parts = urlsplit(url)
    address = destination.addresses[0]
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {"host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": destination.host} if parts.scheme == "https" else {}
    return pinned, headers, extensions


def post(
    client: httpcore.ConnectionPool,
    url: str,
    destination: Destination,
    headers: dict[str, str],
    body: bytes,
    total_timeout: float,
    connect_timeout: float,
) -> AttemptResult:
    """One POST; never raises for what the receiver or the network does."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    target, extra_headers, extensions = pinned_url(url, destination)
    extensions["timeout"] = {
        "connect": connect_timeout,
        "read": total_timeout,
        "write": total_timeout,
        "pool": total_timeout,
    }
    request_headers = {
        "user-agent": USER_AGENT,
        "content-type": "application/json",
        **headers,
        **extra_headers,
    }
    try:
        # Connect, TLS, the request, the headers and the excerpt: all within total_timeout.
        with (
            attempt_deadline(total_timeout),
            client.stream(
                "POST",
                target,
                headers=list(request_headers.items()),
                content=body,
                extensions=extensions,
            ) as response,
        ):
            chunks = bytearray()
            for chunk in response.iter_stream():
                chunks += chunk
                if len(chunks) >= EXCERPT_BYTES:
                    break  # the rest is not read: closing drops the connection
    except HTTP_ERRORS as error:
        duration = time.perf_counter() - started
        return AttemptResult(
            Outcome(error=describe_error(error)), started_at, int(duration * 1000), None
        )
    duration = time.perf_counter() - started
    # PostgreSQL text holds neither invalid UTF-8 nor NUL: both become U+FFFD.
    excerpt = (
        bytes(chunks[:EXCERPT_BYTES])
        .decode("utf-8", errors="replace")
        .replace("\x00", "\ufffd")[:EXCERPT_CHARS]
    )
    retry_after_header = next(
        (
            value.decode("latin-1")
            for name, value in response.headers
            if name.lower() == b"retry-after"
        ),
        None,
    )
    retry_after = parse_retry_after(retry_after_header, datetime.now(UTC))
    return AttemptResult(
        Outcome(status_code=response.status, retry_after=retry_after),
        started_at,
        int(duration * 1000),
        excerpt,
    )
