"""``worker.delivery.post``: one webhook request, sent to the address the SSRF
check approved while ``Host`` and TLS (SNI and the certificate check) keep the
endpoint's name. Local servers play the receiver: plain HTTP, and TLS with a
throwaway CA from ``trustme``."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import pytest
import trustme

from common.delivery.destinations import resolve_destination
from worker.delivery.post import EXCERPT_CHARS, post

NAME = "hooks.test"  # resolved by the test's resolver only: never by DNS


@dataclass
class Seen:
    host: str
    path: str
    body: bytes
    webhook_id: str | None


@dataclass
class Receiver:
    port: int
    seen: list[Seen] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: threading.Event | None = None  # set: answer; unset: keep the client waiting


@contextmanager
def receiver(tls_context: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            state.seen.append(Seen(self.headers["host"], self.path, raw, self.headers.get("webhook-id")))
            if state.hang is not None:
                state.hang.wait(10)
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            conn, address = super().get_request()
            return (tls_context.wrap_socket(conn, server_side=True) if tls_context else conn), address

        def handle_error(self, request, client_address) -> None:
            pass  # a refused certificate ends the handshake: expected here

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hang is not None:
            state.hang.set()
        server.shutdown()
        server.server_close()


def send(client: httpcore.ConnectionPool, url: str, body: bytes = b'{"n":1}', timeout: float = 5.0):
    destination = resolve_destination(url, allow_private=True, resolver=lambda host, port: ["127.0.0.1"])
    headers = {"webhook-id": "msg_test", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    return post(client, url, destination, headers, body, timeout, 1.0)


@pytest.fixture
def client() -> Iterator[httpcore.ConnectionPool]:
    with httpcore.ConnectionPool(retries=0) as pool:
        yield pool


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_client(ca: trustme.CA) -> httpcore.ConnectionPool:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpcore.ConnectionPool(ssl_context=context, retries=0)


def tls_server(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    return context


def test_plain_http_goes_to_the_checked_address_with_the_endpoint_name(client):
    with receiver() as rx:
        result = send(client, f"http://{NAME}:{rx.port}/hook?tenant=7", body=b'{"n":1}')
    assert result.outcome.status_code == 200 and result.outcome.error is None
    assert result.excerpt == "ok"
    assert [(s.host, s.path, s.body, s.webhook_id) for s in rx.seen] == [
        (f"{NAME}:{rx.port}", "/hook?tenant=7", b'{"n":1}', "msg_test")]


def test_tls_checks_the_certificate_against_the_name_not_the_address(ca):
    with receiver(tls_server(ca, NAME)) as rx, tls_client(ca) as client:
        result = send(client, f"https://{NAME}:{rx.port}/hook")
    assert result.outcome.status_code == 200, result.outcome.error
    assert rx.seen[0].host == f"{NAME}:{rx.port}"


def test_tls_certificate_for_another_name_is_refused(ca):
    with receiver(tls_server(ca, "other.test")) as rx, tls_client(ca) as client:
        result = send(client, f"https://{NAME}:{rx.port}/hook")
    assert result.outcome.status_code is None
    assert result.outcome.error.startswith("ConnectError") and "certificate" in result.outcome.error.lower()
    assert rx.seen == []  # nothing was sent to a server that could not prove the name


def test_answer_status_retry_after_and_a_bounded_excerpt(client):
    with receiver() as rx:
        rx.status, rx.headers, rx.body = 429, {"Retry-After": "7"}, b"x" * 200_000
        result = send(client, f"http://{NAME}:{rx.port}/hook")
        again = send(client, f"http://{NAME}:{rx.port}/hook")  # the connection stays usable
    assert result.outcome.status_code == 429 and result.outcome.retry_after == 7.0
    assert result.excerpt == "x" * EXCERPT_CHARS
    assert again.outcome.status_code == 429


def test_no_answer_in_time_is_a_timeout(client):
    with receiver() as rx:
        rx.hang = threading.Event()
        started = time.monotonic()
        result = send(client, f"http://{NAME}:{rx.port}/hook", timeout=0.3)
        elapsed = time.monotonic() - started
    assert result.outcome.status_code is None and result.outcome.error.startswith("ReadTimeout")
    assert 0.25 <= elapsed < 5


def test_refused_connection_is_an_error_not_an_exception(client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        result = send(client, f"http://{NAME}:{port}/hook")
    assert result.outcome.status_code is None and result.outcome.error.startswith("ConnectError")
    assert result.excerpt is None
