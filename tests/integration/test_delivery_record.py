"""The lease and the record, statement by statement, on a real (migrated)
PostgreSQL: ``CLAIM_ONE`` takes the lease and loads what the POST needs; a lease
that lapsed (its worker died) is dispatched again at once, a live one never;
``RECORD`` writes the attempt, the message's next state and a 410's endpoint
disabling in one statement, and nothing at all without the lease token; it keeps
``failing_since`` and disables an endpoint that has failed for too long, writing the
endpoint's row only when something changes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.support.message_rows import insert_delivery, insert_endpoint, lapse_lease
from tests.support.stack import fresh_database
from worker.delivery.queries import CLAIM_DUE, CLAIM_ONE, GIVE_UP, PARK_EXPIRED, RECORD

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def conn():
    with (
        fresh_database() as url,
        psycopg.connect(url, autocommit=True, row_factory=dict_row) as connection,
    ):
        yield connection


def new_message(conn) -> tuple[str, str]:
    endpoint_id = insert_endpoint(conn)
    return endpoint_id, insert_delivery(conn, endpoint_id)


def claim(conn, delivery_id: str) -> tuple[str, dict | None]:
    token = uuid.uuid4().hex
    return token, conn.execute(
        CLAIM_ONE, {"id": delivery_id, "token": token, "lease": 30, "round": 3600}
    ).fetchone()


def record(
    conn,
    delivery_id: str,
    token: str,
    status: str,
    code: int | None,
    disable: bool = False,
    disable_after_days: float = 5,
    failing_after: float = 300,
):
    return conn.execute(
        RECORD,
        {
            "id": delivery_id,
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
            "succeeded": status == "delivered",
            "disable_after": disable_after_days * 86400,
            "failing_after": failing_after,
        },
    ).fetchone()


def test_claim_loads_the_message_and_endpoint_and_holds_the_lease(conn):
    endpoint_id, delivery_id = new_message(conn)
    token, row = claim(conn, delivery_id)
    assert (
        row["body"] == '{"n":1}'
        and row["endpoint_id"] == endpoint_id
        and row["url"] == "http://hooks.test/x"
    )
    assert row["secret"] == "whsec_x" and row["disabled"] is False
    assert claim(conn, delivery_id)[1] is None  # a duplicate task finds the lease and does nothing
    held = conn.execute(
        "SELECT claim_token FROM webhook_deliveries WHERE id = %s", (delivery_id,)
    ).fetchone()
    assert held["claim_token"] == token


def test_record_writes_the_attempt_and_the_next_state_together(conn):
    endpoint_id, delivery_id = new_message(conn)
    token, _ = claim(conn, delivery_id)
    assert record(conn, delivery_id, token, "pending", 500)["attempt_count"] == 1
    message = conn.execute(
        "SELECT * FROM webhook_deliveries WHERE id = %s", (delivery_id,)
    ).fetchone()
    assert (
        message["status"] == "pending"
        and message["claim_token"] is None
        and message["last_error"] == "HTTP 500"
    )
    assert message["next_attempt_at"] > datetime.now(UTC)  # 5 s from now
    attempts = conn.execute(
        "SELECT number, status_code, duration_ms, response_excerpt FROM webhook_attempts"
        " WHERE delivery_id = %s",
        (delivery_id,),
    ).fetchall()
    assert attempts == [
        {"number": 1, "status_code": 500, "duration_ms": 12, "response_excerpt": "ok"}
    ]
    endpoint = conn.execute(
        "SELECT disabled FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    ).fetchone()
    assert endpoint["disabled"] is False


def test_record_without_the_lease_writes_nothing(conn):
    endpoint_id, delivery_id = new_message(conn)
    token, _ = claim(conn, delivery_id)
    assert record(conn, delivery_id, "someone-elses-token", "failed", 410, disable=True) is None
    assert (
        conn.execute(
            "SELECT count(*) AS n FROM webhook_attempts WHERE delivery_id = %s", (delivery_id,)
        ).fetchone()["n"]
        == 0
    )
    message = conn.execute(
        "SELECT status, attempt_count, claim_token FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    assert message == {"status": "pending", "attempt_count": 0, "claim_token": token}
    endpoint = conn.execute(
        "SELECT disabled FROM webhook_endpoints WHERE id = %s", (endpoint_id,)
    ).fetchone()
    assert endpoint["disabled"] is False  # not even the 410's endpoint change
    # The same record a second time (a commit whose answer was lost) finds the token gone.
    assert record(conn, delivery_id, token, "delivered", 200)["attempt_count"] == 1
    assert record(conn, delivery_id, token, "delivered", 200) is None


def test_a_410_fails_the_message_and_disables_its_endpoint_in_the_same_statement(conn):
    endpoint_id, delivery_id = new_message(conn)
    token, _ = claim(conn, delivery_id)
    assert record(conn, delivery_id, token, "failed", 410, disable=True)["attempt_count"] == 1
    message = conn.execute(
        "SELECT status, next_attempt_at FROM webhook_deliveries WHERE id = %s", (delivery_id,)
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
    for delivery_id in (crashed, alive):
        conn.execute(
            "UPDATE webhook_deliveries SET dispatched_at = now() WHERE id = %s", (delivery_id,)
        )
        assert claim(conn, delivery_id)[1] is not None
    lapse_lease(conn, crashed)
    dispatched = {
        row["id"]
        for row in conn.execute(CLAIM_DUE, {"redispatch": 300, "batch": 10_000, "lookahead": 1.5})
    }
    assert crashed in dispatched and alive not in dispatched
    assert claim(conn, crashed)[1] is not None  # the new task takes it over


def endpoint_row(conn, endpoint_id: str) -> dict:
    return conn.execute(
        "SELECT xmin::text AS version, failing_since, disabled, disabled_reason"
        " FROM webhook_endpoints WHERE id = %s",
        (endpoint_id,),
    ).fetchone()


def attempt(conn, endpoint_id: str, status: str, code: int, **options) -> dict:
    delivery_id = insert_delivery(conn, endpoint_id)
    token, _ = claim(conn, delivery_id)
    return record(conn, delivery_id, token, status, code, **options)


def test_failing_since_starts_at_the_first_failure_and_ends_at_a_success(conn):
    endpoint_id = insert_endpoint(conn)
    healthy = endpoint_row(conn, endpoint_id)
    attempt(conn, endpoint_id, "delivered", 200)
    assert endpoint_row(conn, endpoint_id)["version"] == healthy["version"]  # not written

    attempt(conn, endpoint_id, "pending", 500)
    failing = endpoint_row(conn, endpoint_id)
    assert failing["failing_since"] is not None and failing["disabled"] is False
    attempt(conn, endpoint_id, "pending", 503)
    again = endpoint_row(conn, endpoint_id)
    assert again["failing_since"] == failing["failing_since"]  # the first failure's time
    assert again["version"] == failing["version"]  # and no write for the second

    attempt(conn, endpoint_id, "delivered", 200)
    assert endpoint_row(conn, endpoint_id)["failing_since"] is None


def test_an_endpoint_failing_past_the_limit_is_disabled_at_its_next_failure(conn):
    endpoint_id = insert_endpoint(conn)
    attempt(conn, endpoint_id, "pending", 500)
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE id = %s",
        (endpoint_id,),
    )
    # ENDPOINT_DISABLE_AFTER_DAYS=0: never.
    assert (
        attempt(conn, endpoint_id, "pending", 500, disable_after_days=0)["auto_disabled"] is False
    )
    assert endpoint_row(conn, endpoint_id)["disabled"] is False
    # Past 5 days: this failure disables it, once, saying why.
    assert attempt(conn, endpoint_id, "pending", 500)["auto_disabled"] is True
    disabled = endpoint_row(conn, endpoint_id)
    assert disabled["disabled"] is True
    assert disabled["disabled_reason"].startswith("disabled automatically: every attempt failed")
    later = attempt(conn, endpoint_id, "failed", 500)  # an attempt that was in flight
    assert later["auto_disabled"] is False
    assert endpoint_row(conn, endpoint_id)["version"] == disabled["version"]


def test_a_410_still_disables_and_says_410(conn):
    endpoint_id = insert_endpoint(conn)
    row = attempt(conn, endpoint_id, "failed", 410, disable=True)
    assert row["auto_disabled"] is False
    gone = endpoint_row(conn, endpoint_id)
    assert gone["disabled"] is True and "410" in gone["disabled_reason"]


# --- operational events (common/delivery/operational.py) --------------------------------


def events(conn, endpoint_id: str) -> list[tuple[str, dict]]:
    """The operational events about ``endpoint_id`` so far, oldest first."""
    rows = conn.execute(
        "SELECT event_type, data FROM webhook_operational_events"
        " WHERE data->>'endpoint_id' = %s ORDER BY id",
        (endpoint_id,),
    ).fetchall()
    return [(row["event_type"], row["data"]) for row in rows]


def test_failing_is_told_once_after_the_wait_and_recovered_at_the_next_success(conn):
    endpoint_id = insert_endpoint(conn)
    attempt(conn, endpoint_id, "pending", 500)
    attempt(conn, endpoint_id, "pending", 500)
    assert events(conn, endpoint_id) == []  # failing for less than ENDPOINT_FAILING_AFTER
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '301 seconds' WHERE id = %s",
        (endpoint_id,),
    )
    attempt(conn, endpoint_id, "pending", 503)
    told = endpoint_row(conn, endpoint_id)
    attempt(conn, endpoint_id, "pending", 503)
    assert endpoint_row(conn, endpoint_id)["version"] == told["version"]  # told once, no write
    [(kind, data)] = events(conn, endpoint_id)
    assert kind == "endpoint.failing" and data["last_error"] == "HTTP 503"
    assert data["app_id"] == "app_default" and data["failing_since"].endswith("Z")

    attempt(conn, endpoint_id, "delivered", 200)
    attempt(conn, endpoint_id, "delivered", 200)
    assert [kind for kind, _ in events(conn, endpoint_id)] == [
        "endpoint.failing",
        "endpoint.recovered",
    ]
    recovered = events(conn, endpoint_id)[1][1]
    assert recovered["failing_since"] == data["failing_since"] and recovered["recovered_at"]


def test_a_blip_tells_nobody_and_zero_wait_tells_at_the_first_failure(conn):
    blip = insert_endpoint(conn)
    attempt(conn, blip, "pending", 500)
    attempt(conn, blip, "delivered", 200)  # recovered before anyone was told: no recovered
    assert events(conn, blip) == []

    eager = insert_endpoint(conn)
    attempt(conn, eager, "pending", 500, failing_after=0)
    attempt(conn, eager, "pending", 500, failing_after=0)
    assert [kind for kind, _ in events(conn, eager)] == ["endpoint.failing"]


def test_disabling_and_exhausting_are_told_and_a_410_only_as_disabled(conn):
    dead = insert_endpoint(conn)
    attempt(conn, dead, "pending", 500)
    conn.execute(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days',"
        " failing_notified_at = now() - interval '6 days' WHERE id = %s",
        (dead,),
    )
    attempt(conn, dead, "pending", 500)
    [(kind, data)] = events(conn, dead)
    assert kind == "endpoint.disabled" and data["trigger"] == "automatic"
    assert data["reason"].startswith("disabled automatically")

    gone = insert_endpoint(conn)
    attempt(conn, gone, "failed", 410, disable=True, failing_after=0)
    [(kind, data)] = events(conn, gone)  # not failing, not exhausted: disabled says it
    assert kind == "endpoint.disabled" and data["reason"] == "the receiver answered 410 Gone"

    tired = insert_endpoint(conn)
    delivery_id = insert_delivery(conn, tired)
    token, _ = claim(conn, delivery_id)
    record(conn, delivery_id, token, "failed", 500)
    [(kind, data)] = events(conn, tired)
    assert kind == "message.attempt.exhausted"
    assert data["delivery_id"] == delivery_id and data["last_status_code"] == 500
    assert data["attempt_count"] == 1 and data["last_error"] == "HTTP 500"


def test_nothing_is_told_about_an_operational_endpoint(conn):
    """No loops: an operational endpoint that fails tells nobody (its events would go to
    the operational endpoints, perhaps itself)."""
    endpoint_id = insert_endpoint(conn)
    conn.execute("UPDATE webhook_endpoints SET operational = true WHERE id = %s", (endpoint_id,))
    attempt(conn, endpoint_id, "pending", 500, failing_after=0)
    attempt(conn, endpoint_id, "failed", 500, failing_after=0)
    attempt(conn, endpoint_id, "failed", 410, disable=True)
    assert events(conn, endpoint_id) == []
    assert endpoint_row(conn, endpoint_id)["disabled"] is True  # it is still disabled


@pytest.mark.parametrize("statement", [GIVE_UP, PARK_EXPIRED], ids=["give_up", "park_expired"])
def test_a_delivery_failed_without_an_attempt_is_exhausted_too(conn, statement):
    endpoint_id, delivery_id = new_message(conn)
    token, _ = claim(conn, delivery_id)
    params = {"id": delivery_id, "token": token, "reason": "gave up"}
    assert conn.execute(statement, params).fetchall()
    [(kind, data)] = events(conn, endpoint_id)
    assert kind == "message.attempt.exhausted" and data["last_error"] == "gave up"
    assert data["last_status_code"] is None
    # Without the lease: nothing failed, nothing told.
    assert not conn.execute(statement, params).fetchall()
    assert len(events(conn, endpoint_id)) == 1
