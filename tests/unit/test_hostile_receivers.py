"""``worker.delivery.post`` against receivers that misbehave on purpose (real
TCP servers on loopback, :mod:`tests.support.hostile`): every one ends in a
result that can be recorded, within the attempt's deadline, however the peer
trickles, lies or floods."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpcore
import pytest

from common.delivery.destinations import resolve_destination
from tests.support.hostile import (
    BEHAVIOURS,
    HostileReceiver,
    answer,
    tls_handshake_trickled,
    trickle,
)
from worker.delivery.network import AttemptBackend, attempt_deadline, time_left
from worker.delivery.post import post

DEADLINE = 1.0
SLACK = 0.75  # scheduling on a busy 2-core machine; a stalled attempt would take 10 s or more

# What each behaviour must end as: a status code, or an error class at the start of the message.
EXPECTED = {
    "headers trickled": "ReadTimeout",
    "body trickled": "ReadTimeout",
    "endless body": 200,  # the status is the answer; the body is read up to the excerpt only
    "huge headers": "RemoteProtocolError",
    "reset mid-response": "ReadError",
    "1 GB promised, nothing sent": "ReadTimeout",
    "NUL in the body": 500,
    "invalid UTF-8 in the body": 500,
    "NUL in a header": "RemoteProtocolError",
    "invalid UTF-8 in a header": 503,  # recorded; the unreadable Retry-After is ignored
    "redirect to the metadata address": 302,  # recorded as it is, never followed
}


@pytest.fixture
def client() -> Iterator[httpcore.ConnectionPool]:
    with httpcore.ConnectionPool(retries=0, network_backend=AttemptBackend()) as pool:
        yield pool


def send(client: httpcore.ConnectionPool, url: str):
    destination = resolve_destination(
        url, allow_private=True, resolver=lambda host, port: ["127.0.0.1"]
    )
    headers = {"webhook-id": "msg_test", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    return post(client, url, destination, headers, b'{"n":1}', DEADLINE, DEADLINE)


def test_the_zoo_is_the_expected_one():
    assert sorted(BEHAVIOURS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
def test_a_hostile_receiver_ends_in_a_recordable_result_within_the_deadline(client, name):
    with HostileReceiver(BEHAVIOURS[name]) as rx:
        started = time.monotonic()
        result = send(client, rx.url())
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + SLACK, f"{name}: the attempt held its slot for {elapsed:.1f}s"
    expected = EXPECTED[name]
    if isinstance(expected, int):
        assert result.outcome.status_code == expected, result.outcome
    else:
        assert result.outcome.status_code is None
        assert result.outcome.error.startswith(expected), result.outcome.error
    # A timeout weighs more in the receiver's breaker (BREAKER_TIMEOUT_WEIGHT): it held the slot.
    assert result.timed_out == (isinstance(expected, str) and expected.endswith("Timeout"))
    # PostgreSQL text cannot hold NUL; the excerpt must be storable as it is.
    assert result.excerpt is None or "\x00" not in result.excerpt
    assert rx.connections == 1  # no retry inside the attempt, no redirect followed


def test_a_tls_handshake_trickled_ends_at_the_deadline(client):
    with HostileReceiver(tls_handshake_trickled, read_head=False, scheme="https") as rx:
        started = time.monotonic()
        result = send(client, rx.url())
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + SLACK, f"the handshake held the slot for {elapsed:.1f}s"
    assert result.outcome.status_code is None and "Timeout" in result.outcome.error


def test_invalid_bytes_in_the_excerpt_are_replaced_not_dropped(client):
    with HostileReceiver(BEHAVIOURS["NUL in the body"]) as rx:
        result = send(client, rx.url())
    assert result.excerpt == "bad\ufffd\ufffdbyte"


def test_a_keep_alive_connection_serves_the_next_attempt_under_its_own_deadline(client):
    """The deadline belongs to the attempt, not to the connection it happens to reuse."""

    def twice(conn, stop):
        answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2", b"ok")(conn, stop)

    with HostileReceiver(twice) as rx:
        assert send(client, rx.url()).outcome.status_code == 200
        time.sleep(DEADLINE + 0.1)  # the first attempt's deadline is long gone
        assert send(client, rx.url()).outcome.status_code == 200


def test_without_the_deadline_a_trickle_runs_past_every_per_read_timeout():
    """The control: httpcore's per-read timeouts alone let a trickle hold the slot."""
    slow = trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", every=0.1)  # ~4 s
    timeouts = {"read": DEADLINE, "connect": DEADLINE, "pool": DEADLINE, "write": DEADLINE}
    with HostileReceiver(slow) as rx, httpcore.ConnectionPool(retries=0) as plain:
        started = time.monotonic()
        response = plain.request("POST", rx.url(), content=b"{}", extensions={"timeout": timeouts})
        elapsed = time.monotonic() - started
    assert response.status == 200 and elapsed > 3 * DEADLINE
    with (
        HostileReceiver(slow) as rx,
        httpcore.ConnectionPool(retries=0, network_backend=AttemptBackend()) as bounded,
    ):
        assert send(bounded, rx.url()).outcome.error.startswith("ReadTimeout")


def test_time_left_is_the_smaller_of_the_timeout_and_the_deadline():
    now = [100.0]
    with attempt_deadline(2.0, clock=lambda: now[0]):
        assert time_left(5.0, TimeoutError, clock=lambda: now[0]) == 2.0
        assert time_left(1.0, TimeoutError, clock=lambda: now[0]) == 1.0
        assert time_left(None, TimeoutError, clock=lambda: now[0]) == 2.0
        now[0] = 102.0
        with pytest.raises(TimeoutError):
            time_left(1.0, TimeoutError, clock=lambda: now[0])
    assert time_left(5.0, TimeoutError) == 5.0  # no attempt in progress: no deadline


def test_an_unreadable_retry_after_is_ignored_not_fatal(client):
    with HostileReceiver(BEHAVIOURS["invalid UTF-8 in a header"]) as rx:
        result = send(client, rx.url())
    assert result.outcome.status_code == 503 and result.outcome.retry_after is None
