"""Level 5: one webhook POST, sent to the address the SSRF check approved,
never raising for what the receiver or the network does."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpcore

from common.connections.probes import describe_error
from common.delivery.destinations import Destination
from common.delivery.retry_schedule import Outcome, parse_retry_after
from worker.delivery.network import attempt_deadline, pinned_to

__all__ = [
    "EXCERPT_BYTES",
    "EXCERPT_CHARS",
    "HTTP_ERRORS",
    "USER_AGENT",
    "AttemptResult",
    "storable",
    "post",
]

EXCERPT_BYTES = 1024
EXCERPT_CHARS = 500
ERROR_CHARS = 500
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
    timed_out: bool = False  # no answer within the deadline (or the connect timeout)


def storable(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL (which no ``text`` column holds)
    becomes U+FFFD, as invalid UTF-8 already does when decoding."""
    return text.replace("\x00", "\ufffd")


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
    timeouts = {
        "connect": connect_timeout,
        "read": total_timeout,
        "write": total_timeout,
        "pool": total_timeout,
    }
    request_headers = {
        "user-agent": USER_AGENT,
        "content-type": "application/json",
        **headers,
    }
    try:
        # Connect, TLS, the request, the headers and the excerpt: all within total_timeout.
        # The connection goes to the address the SSRF check approved; the URL keeps the
        # name, for Host, TLS SNI and the certificate check (worker/delivery/network.py).
        with (
            attempt_deadline(total_timeout),
            pinned_to(destination.host, destination.port, str(destination.addresses[0])),
            client.stream(
                "POST",
                url,
                headers=list(request_headers.items()),
                content=body,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            chunks = bytearray()
            for chunk in response.iter_stream():
                chunks += chunk
                if len(chunks) >= EXCERPT_BYTES:
                    break  # the rest is not read: closing drops the connection
    except HTTP_ERRORS as error:
        duration = time.perf_counter() - started
        # The message may quote the peer's bytes (a bad header): keep it storable.
        error_text = storable(describe_error(error))[:ERROR_CHARS]
        timed_out = isinstance(error, httpcore.TimeoutException)
        return AttemptResult(
            Outcome(error=error_text), started_at, int(duration * 1000), None, timed_out
        )
    duration = time.perf_counter() - started
    excerpt = storable(bytes(chunks[:EXCERPT_BYTES]).decode("utf-8", errors="replace"))
    excerpt = excerpt[:EXCERPT_CHARS]
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
