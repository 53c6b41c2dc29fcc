"""Refuse oversized request bodies before reading them.

``POST /v1/messages`` checks the payload against ``MAX_PAYLOAD_BYTES`` after
parsing it; without this middleware a client could still make the API read
(and hold in memory) a body of any size first. Here a body larger than
:func:`body_limit` is answered 413 from its ``Content-Length`` alone, and a
chunked body is cut off as soon as it grows past the limit.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

ENVELOPE_BYTES = 64 * 1024  # endpoint id, event type, JSON whitespace around the payload


def body_limit(max_payload_bytes: int) -> int:
    """The largest request body the API reads: room for a maximal payload, pretty-printed."""
    return 2 * max_payload_bytes + ENVELOPE_BYTES


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(int(declared))(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI turns an HTTPException raised while reading the body into our
                    # JSON error.
                    raise HTTPException(413, self._message(received))
            return message

        await self.app(scope, counting_receive, send)

    def _message(self, size: int) -> str:
        return (
            f"request body of {size}+ bytes is over the API's limit of {self.limit} bytes"
            " (2 x MAX_PAYLOAD_BYTES + 64 KiB)"
        )

    def _refuse(self, size: int):
        return error_response(413, "payload_too_large", self._message(size))
