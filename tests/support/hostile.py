"""Receivers that misbehave on purpose, on real TCP sockets on loopback.

A :class:`HostileReceiver` reads each request's head, then lets its
``behaviour`` do what it likes with the socket: trickle, lie, reset, flood.
The behaviours below are the ones the delivery code must survive; each is a
plain function of the connected socket, so a test can add its own.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

Behaviour = Callable[[socket.socket, threading.Event], None]

__all__ = ["BEHAVIOURS", "HostileReceiver", "answer"]


class HostileReceiver:
    """A threaded TCP server on a free 127.0.0.1 port; ``behaviour(conn, stop)``
    runs once per connection after the request head has been read (at once
    with ``read_head=False``). ``stop`` is set when the server stops, so endless
    behaviours end with the test."""

    def __init__(
        self,
        behaviour: Behaviour,
        tls: ssl.SSLContext | None = None,
        read_head: bool = True,
        scheme: str | None = None,
        host: str = "127.0.0.1",
    ):
        self.behaviour = behaviour
        self.tls = tls
        self.read_head = read_head
        self.scheme = scheme or ("https" if tls else "http")
        self.connections = 0
        self._stop = threading.Event()
        # Any 127.0.0.0/8 address is loopback on Linux: one per receiver gives each
        # its own breaker and limit (webhook:<host>).
        self.host = host
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.1)  # accept() wakes up to see ``stop``
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True, name="hostile-receiver")

    def url(self, host: str | None = None, path: str = "/hook") -> str:
        host = host or self.host
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> HostileReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            if self.read_head:
                read_request_head(conn)
            self.behaviour(conn, self._stop)
        with contextlib.suppress(OSError):
            conn.close()


def read_request_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def answer(head: bytes, body: bytes = b"") -> Behaviour:
    """Send ``head`` (status line and headers, without the blank line) and ``body``, then close."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head + b"\r\n\r\n" + body)

    return behave


def trickle(data: bytes, every: float = 0.2, after: bytes = b"") -> Behaviour:
    """Send ``after`` at once, then ``data`` one byte every ``every`` seconds
    (each byte well within any per-read timeout)."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(after)
        for byte in data:
            if stop.wait(every):
                return
            conn.sendall(bytes([byte]))

    return behave


def endless_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    while not stop.is_set():
        conn.sendall(chunk)


def huge_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for n in range(10_000):
        conn.sendall(b"X-Filler-%d: %s\r\n" % (n, b"y" * 100))


def reset_mid_response(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    time.sleep(0.05)
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def promise_and_hang(conn: socket.socket, stop: threading.Event) -> None:
    """A 200 that announces a gigabyte and sends nothing of it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    stop.wait(30)


def tls_handshake_trickled(conn: socket.socket, stop: threading.Event) -> None:
    """Read the ClientHello, then send a TLS record header announcing 64 bytes
    and trickle them: the handshake never completes, no read ever times out."""
    conn.recv(4096)
    trickle(b"\x00" * 64, after=b"\x16\x03\x03\x00\x40")(conn, stop)


HEADERS_TRICKLED = trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: y\r\n" * 50)

BEHAVIOURS: dict[str, Behaviour] = {
    "headers trickled": HEADERS_TRICKLED,
    "body trickled": trickle(b"z" * 100, after=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
    "endless body": endless_body,
    "huge headers": huge_headers,
    "reset mid-response": reset_mid_response,
    "1 GB promised, nothing sent": promise_and_hang,
    "NUL in the body": answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 9", b"bad\x00\x00byte"),
    "invalid UTF-8 in the body": answer(
        b"HTTP/1.1 500 Oops\r\nContent-Length: 6", b"\xff\xfe\xc3(ok"
    ),
    "NUL in a header": answer(b"HTTP/1.1 503 Busy\r\nX-Bad: a\x00b\r\nContent-Length: 0"),
    "invalid UTF-8 in a header": answer(
        b"HTTP/1.1 503 Busy\r\nRetry-After: \xff\xfe\r\nX-Name: \xc3(\r\nContent-Length: 0"
    ),
    "redirect to the metadata address": answer(
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
        b"Content-Length: 0"
    ),
}
