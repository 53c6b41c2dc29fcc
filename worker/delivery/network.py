"""Level 5: the network as one delivery attempt sees it. Two rules hold for
every socket an attempt opens, whatever httpcore does with it.

**One wall-clock deadline.** httpcore's timeouts apply to each socket
operation: a receiver that sends its headers a byte at a time, each byte within
the read timeout, holds the attempt (and the worker slot) for as long as it
likes. Here every connect, TLS handshake, write and read is given at most the
time left until the attempt's deadline (:func:`attempt_deadline`), and raises
httpcore's timeout for that operation once it has passed. A TLS handshake is
one call here and Python bounds it as a whole by the socket's timeout.

**Only the checked address.** The SSRF check approved the addresses a host
resolved to; DNS may answer differently a moment later. The request keeps the
host's name (so ``Host``, TLS SNI and the certificate check use it, and the
pool keeps keep-alive connections per name: two names that share an address
never share a TLS connection), and :func:`pinned_to` makes the connection go
to the approved address, never anywhere else.

Both live in context variables, not on the connection: a keep-alive
connection made for one attempt serves the next under that one's rules.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore

__all__ = ["AttemptBackend", "attempt_deadline", "pinned_to", "time_left"]

_deadline: ContextVar[float | None] = ContextVar("jenga_attempt_deadline", default=None)
# (host, port) -> the address the SSRF check approved for it.
_pinned: ContextVar[dict[tuple[str, int], str] | None] = ContextVar("jenga_pinned", default=None)


@contextmanager
def pinned_to(host: str, port: int, address: str) -> Iterator[None]:
    """Connections of the block to ``host:port`` go to ``address``, and no other
    connection may be made."""
    token = _pinned.set({(host, port): address})
    try:
        yield
    finally:
        _pinned.reset(token)


def pinned_address(host: str, port: int) -> str:
    """Where a connection to ``host:port`` goes; ``ConnectError`` if nowhere."""
    address = (_pinned.get() or {}).get((host, port))
    if address is None:
        raise httpcore.ConnectError(f"{host}:{port} is not the destination that was checked")
    return address


@contextmanager
def attempt_deadline(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Every socket operation of the block ends within ``seconds`` from now."""
    token = _deadline.set(clock() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(
    timeout: float | None, expired: type[Exception], clock: Callable[[], float] = time.monotonic
) -> float | None:
    """``timeout`` cut to what is left of the current deadline; ``expired`` is
    raised when nothing is left. Without a deadline, ``timeout`` as it is."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - clock()
    if left <= 0:
        raise expired("the attempt's deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation ends by the current attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # httpcore's own write loops over send() with the same timeout for each
        # call: a peer that takes a byte at a time would stretch it without end.
        sock = self._stream.get_extra_info("socket")
        view = memoryview(buffer)
        try:
            while view:
                sock.settimeout(time_left(timeout, httpcore.WriteTimeout))
                view = view[sock.send(view) :]
        except TimeoutError as error:  # socket.timeout
            raise httpcore.WriteTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.WriteError(str(error)) from error

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class AttemptBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, held to the current attempt's deadline and
    pinned address."""

    def __init__(self, backend: httpcore.NetworkBackend | None = None):
        self._backend = backend or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = pinned_address(host, port)
        left = time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._backend.connect_tcp(address, port, left, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks never go to a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
