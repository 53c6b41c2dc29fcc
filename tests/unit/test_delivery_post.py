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

import httpcore
import pytest
import trustme

from common.delivery.destinations import resolve_destination
from tests.support.http_server import FakeHTTPServer, Reply, Request
from worker.delivery.network import AttemptBackend
from worker.delivery.post import EXCERPT_CHARS, post

NAME = "hooks.test"  # resolved by the test's resolver only: never by DNS


class StubReceiver(FakeHTTPServer):
    """Answers every request with the status, headers and body the test set;
    while ``hang`` is an unset event, keeps the client waiting instead."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        super().__init__(tls)
        self.status, self.headers, self.body = 200, {}, b"ok"
        self.hang: threading.Event | None = None

    def answer(self, request: Request) -> Reply:
        if self.hang is not None:
            self.hang.wait(10)
        return Reply(self.status, self.headers, self.body)

    def stop(self) -> None:
        if self.hang is not None:
            self.hang.set()
        super().stop()


def send(client: httpcore.ConnectionPool, url: str, body: bytes = b'{"n":1}', timeout: float = 5.0):
    destination = resolve_destination(
        url, allow_private=True, resolver=lambda host, port: ["127.0.0.1"]
    )
    headers = {"webhook-id": "msg_test", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    return post(client, url, destination, headers, body, timeout, 1.0)


@pytest.fixture
def client() -> Iterator[httpcore.ConnectionPool]:
    with httpcore.ConnectionPool(retries=0, network_backend=AttemptBackend()) as pool:
        yield pool


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_client(ca: trustme.CA) -> httpcore.ConnectionPool:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return httpcore.ConnectionPool(ssl_context=context, retries=0, network_backend=AttemptBackend())


def tls_server(ca: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    return context


def test_plain_http_goes_to_the_checked_address_with_the_endpoint_name(client):
    with StubReceiver() as rx:
        result = send(client, f"http://{NAME}:{rx.port}/hook?tenant=7", body=b'{"n":1}')
    assert result.outcome.status_code == 200 and result.outcome.error is None
    assert result.excerpt == "ok"
    seen = [(r.headers["host"], r.path, r.raw, r.headers.get("webhook-id")) for r in rx.requests]
    assert seen == [(f"{NAME}:{rx.port}", "/hook?tenant=7", b'{"n":1}', "msg_test")]


def test_tls_checks_the_certificate_against_the_name_not_the_address(ca):
    with StubReceiver(tls_server(ca, NAME)) as rx, tls_client(ca) as client:
        result = send(client, f"https://{NAME}:{rx.port}/hook")
    assert result.outcome.status_code == 200, result.outcome.error
    assert rx.requests[0].headers["host"] == f"{NAME}:{rx.port}"


def test_tls_certificate_for_another_name_is_refused(ca):
    with StubReceiver(tls_server(ca, "other.test")) as rx, tls_client(ca) as client:
        result = send(client, f"https://{NAME}:{rx.port}/hook")
    assert result.outcome.status_code is None
    assert (
        result.outcome.error.startswith("ConnectError")
        and "certificate" in result.outcome.error.lower()
    )
    assert rx.requests == []  # nothing was sent to a server that could not prove the name


def test_answer_status_retry_after_and_a_bounded_excerpt(client):
    with StubReceiver() as rx:
        rx.status, rx.headers, rx.body = 429, {"Retry-After": "7"}, b"x" * 200_000
        result = send(client, f"http://{NAME}:{rx.port}/hook")
        again = send(client, f"http://{NAME}:{rx.port}/hook")  # the connection stays usable
    assert result.outcome.status_code == 429 and result.outcome.retry_after == 7.0
    assert result.excerpt == "x" * EXCERPT_CHARS
    assert again.outcome.status_code == 429


def test_no_answer_in_time_is_a_timeout(client):
    with StubReceiver() as rx:
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


def test_two_names_on_one_address_never_share_a_tls_connection(ca):
    """A keep-alive connection proved one name; another name on the same address
    must prove its own (before, the pool keyed connections by address)."""
    with StubReceiver(tls_server(ca, NAME)) as rx, tls_client(ca) as client:
        assert send(client, f"https://{NAME}:{rx.port}/hook").outcome.status_code == 200
        other = send(client, f"https://other.test:{rx.port}/hook")
    assert other.outcome.status_code is None and "certificate" in other.outcome.error.lower()
    assert len(rx.requests) == 1


def test_nothing_connects_outside_an_attempt_or_to_an_unchecked_host(client):
    with StubReceiver() as rx:
        with pytest.raises(httpcore.ConnectError, match="not the destination that was checked"):
            client.request("POST", f"http://127.0.0.1:{rx.port}/hook", content=b"{}")
    assert rx.requests == []
