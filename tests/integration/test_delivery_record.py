"""The lease and the record, statement by statement, on a real (migrated)
PostgreSQL: ``CLAIM_ONE`` takes the lease and loads what the POST needs; a lease
that lapsed (its worker died) is dispatched again at once, a live one never;
``RECORD`` writes the attempt, the message's next state and a 410's endpoint
disabling in one statement, and nothing at all without the lease token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.message_rows import lapse_lease
from tests.support.stack import fresh_database
from worker.delivery.queries import CLAIM_DUE, CLAIM_ONE, RECORD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conn():
    with (
        fresh_database() as url,
        psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection,
    ):
        yield connection


def new_message(conn) -> tuple[str, str]:
    endpoint_id, message_id = f"ep_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
    conn.execute(
        "INSERT INTO webhook_endpoints (id, url, secret)"
        " VALUES (%s, 'http://hooks.test/x', 'whsec_x')",
        (endpoint_id,),
    )
    conn.execute(
        """INSERT INTO webhook_messages (id, endpoint_id, event_type, payload, body, request_hash,
                    status, next_attempt_at)
           VALUES (%s, %s, 't', '{}', '{"n":1}', 'h', 'pending', now())""",
        (message_id, endpoint_id),
    )
    return endpoint_id, message_id


def claim(conn, message_id: str) -> tuple[str, dict | None]:
    token = uuid.uuid4().hex
    return token, conn.execute(
        CLAIM_ONE, {"id": message_id, "token": token, "lease": 30, "round": 3600}
    ).fetchone()


def record(conn, message_id: str, token: str, status: str, code: int | None, disable: bool = False):
    return conn.execute(
        RECORD,
        {
            "id": message_id,
            "token": token,
            "status": status,
            "retry_in": 5.0,
            "last_error": None if status == "delivered" else f"HTTP {code}",
            "started_at": datetime.now(UTC),
            "duration_ms": 12,
            "status_code": code,
            "error": None,
            "excerpt": "ok",
            "disable_endpoint": disable,
            "disabled_reason": "the receiver answered 410 Gone",
        },
    ).fetchone()


def test_claim_loads_the_message_and_endpoint_and_holds_the_lease(conn):
    endpoint_id, message_id = new_message(conn)
    token, row = claim(conn, message_id)
    assert (
        row["body"] == '{"n":1}'
        and row["endpoint_id"] == endpoint_id
        and row["url"] == "http://hooks.test/x"
    )
    assert row["secret"] == "whsec_x" and row["disabled"] is False
    assert claim(conn, message_id)[1] is None  # a duplicate task finds the lease and does nothing
    held = conn.execute(
        "SELECT claim_token FROM webhook_messages WHERE id = %s", (message_id,)
    ).fetchone()
    assert held["claim_token"] == token


def test_record_writes_the_attempt_and_the_next_state_together(conn):
    endpoint_id, message_id = new_message(conn)
    token, _ = claim(conn, message_id)
    assert record(conn, message_id, token, "pending", 500)["attempt_count"] == 1
    message = conn.execute("SELECT * FROM webhook_messages WHERE id = %s", (message_id,)).fetchone()
    assert (
        message["status"] == "pending"
        and message["claim_token"] is None
        and message["last_error"] == "HTTP 500"
    )
    assert message["next_attempt_at"] > datetime.now(UTC)  # 5 s from now
    attempts = conn.execute(
        "SELECT number, status_code, duration_ms, response_excerpt FROM webhook_attempts"
        " WHERE message_id = %s",
        (message_id,),
    ).fetchall()
    assert attempts == [
        {"number": 1, "status_code": 500, "duration_ms": 12, "response_excerpt": "ok"}
    ]
    endpoint = conn.execute(
        "SELECT disabled FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    ).fetchone()
    assert endpoint["disabled"] is False


def test_record_without_the_lease_writes_nothing(conn):
    endpoint_id, message_id = new_message(conn)
    token, _ = claim(conn, message_id)
    assert record(conn, message_id, "someone-elses-token", "failed", 410, disable=True) is None
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM webhook_attempts WHERE message_id = %s", (message_id,)
        ).fetchone()["n"]
        == 0
    )
    message = conn.execute(
        "SELECT status, attempt_count, claim_token FROM webhook_messages WHERE id = %s",
        (message_id,),
    ).fetchone()
    assert message == {"status": "pending", "attempt_count": 0, "claim_token": token}
    endpoint = conn.execute(
        "SELECT disabled FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    ).fetchone()
    assert endpoint["disabled"] is False  # not even the 410's endpoint change
    # The same record a second time (a commit whose answer was lost) finds the token gone.
    assert record(conn, message_id, token, "delivered", 200)["attempt_count"] == 1
    assert record(conn, message_id, token, "delivered", 200) is None


def test_a_410_fails_the_message_and_disables_its_endpoint_in_the_same_statement(conn):
    endpoint_id, message_id = new_message(conn)
    token, _ = claim(conn, message_id)
    assert record(conn, message_id, token, "failed", 410, disable=True)["attempt_count"] == 1
    message = conn.execute(
        "SELECT status, next_attempt_at FROM webhook_messages WHERE id = %s", (message_id,)
    ).fetchone()
    assert message == {"status": "failed", "next_attempt_at": None}
    endpoint = conn.execute(
        "SELECT disabled, disabled_reason FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    ).fetchone()
    assert endpoint == {"disabled": True, "disabled_reason": "the receiver answered 410 Gone"}


def test_a_lapsed_lease_is_dispatched_again_at_once_a_live_one_never(conn):
    """The dead worker's task is not coming back soon (Redis: after the visibility
    timeout; RabbitMQ: its redelivery met the lease and did nothing): the dispatcher
    sends the message again as soon as the lease lapses, not DELIVERY_REDISPATCH_SECONDS
    after it was first enqueued."""
    _, crashed = new_message(conn)
    _, alive = new_message(conn)
    for message_id in (crashed, alive):
        conn.execute(
            "UPDATE webhook_messages SET dispatched_at = now() WHERE id = %s", (message_id,)
        )
        assert claim(conn, message_id)[1] is not None
    lapse_lease(conn, crashed)
    dispatched = {
        row["id"] for row in conn.execute(CLAIM_DUE, {"redispatch": 300, "batch": 10_000})
    }
    assert crashed in dispatched and alive not in dispatched
    assert claim(conn, crashed)[1] is not None  # the new task takes it over
