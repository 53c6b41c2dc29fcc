"""Test support: the one base of the local HTTP services that tests and
benchmarks talk to (a Slack webhook, a webhook receiver, a flaky or an
overloaded service). A threaded server on a free 127.0.0.1 port that records
every request; a fake supplies only ``answer``, how it replies to one.

    class Teapot(FakeHTTPServer):
        def answer(self, request: Request) -> Reply:
            return Reply(418, body="short and stout")

    with Teapot() as teapot:
        httpx.get(teapot.url); assert teapot.requests[0].method == "GET"
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    raw: bytes
    count: int = 0  # how many requests the server had seen before this one
    status: int = 0  # what the server answered; 0 until it has

    def json(self):
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.raw)
        except ValueError:
            return None


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes = "ok"


class FakeHTTPServer:
    """Subclasses say how they answer (``answer``) and, if they check something
    on arrival, what ``requests`` keeps of each request (``received``)."""

    url_path = "/"

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        self.host = host  # another address to serve test hosts in network namespaces
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.tls = tls
        self.server = _Server((host, 0), _Handler)
        self.server.fake = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def answer(self, request: Request) -> Reply:
        raise NotImplementedError(f"{type(self).__name__} must say how it answers")

    def received(self, request: Request) -> Request:
        return request

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}{self.url_path}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() waits forever on a server never started
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        expected = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(expected)
        if len(raw) < expected:
            # The client went away mid-request (a worker SIGKILLed while sending): no
            # request arrived, as a real receiver sees it.
            handler.close_connection = True
            return
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = self.received(Request(handler.command, handler.path, headers, raw))
        with self.lock:
            request.count = len(self.requests)
            self.requests.append(request)
        reply = self.answer(request)
        request.status = reply.status
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    # Headers and body go out in two writes; with Nagle on, the body waits for
    # the client's delayed ACK (40 ms a request) and skews every timing.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.fake._serve(self)

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._serve(self)

    def log_message(self, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeHTTPServer

    def get_request(self):
        conn, address = super().get_request()
        if self.fake.tls:
            # A failed handshake raises OSError here, which the server drops quietly.
            conn = self.fake.tls.wrap_socket(conn, server_side=True)
        return conn, address

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up (a timeout, a SIGKILLed worker, a refused
        # certificate) is expected; a fault in a fake's own code is not.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
