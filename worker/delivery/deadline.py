"""Level 5: one wall-clock deadline for a whole HTTP attempt.

httpcore's timeouts apply to each socket operation: a receiver that sends its
headers a byte at a time, each byte within the read timeout, holds the attempt
(and the worker slot) for as long as it likes. :class:`DeadlineBackend` wraps
httpcore's own synchronous backend so that every connect, TLS handshake,
write and read is given at most the time left until the deadline of the
attempt in progress (:func:`attempt_deadline`), and raises httpcore's timeout
for that operation once it has passed. A TLS handshake is one call here and
Python bounds it as a whole by the socket's timeout.

The deadline lives in a context variable, not on the connection: a
keep-alive connection made for one attempt serves the next under its own
deadline.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore

__all__ = ["DeadlineBackend", "attempt_deadline", "time_left"]

_deadline: ContextVar[float | None] = ContextVar("jenga_attempt_deadline", default=None)


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


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, held to the current attempt's deadline."""

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
        left = time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._backend.connect_tcp(host, port, left, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
