"""Parked, not spinning, on a real (migrated) PostgreSQL: a receiver whose
breaker is open holds back its endpoint's whole backlog in one statement until
the breaker's next trial (no task per message per cycle), the dispatcher and the
claim skip a parked endpoint's messages still due, a trial that closes the breaker
makes them due again, and a message whose retry schedule runs out while parked
ends ``failed`` with the reason."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import load_settings, set_settings
from tests.support.message_rows import insert_delivery, insert_endpoint
from tests.support.stack import fresh_database
from worker.delivery.queries import CLAIM_DUE, claim, park, round_seconds, unpark

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def settings(settings_env, database_url):
    settings = load_settings(
        {**settings_env, "DATABASE_URL": database_url, "DELIVERY_RETRY_SCHEDULE": "1m,1m"},
        wait_seconds=0,
    )
    set_settings(settings)
    yield settings
    set_settings(None)


def wait_seconds(conn, delivery_id: str) -> float | None:
    """Seconds until the message is due (None: not pending)."""
    row = conn.execute(
        "SELECT status, extract(epoch FROM next_attempt_at - now()) AS wait"
        " FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    return float(row["wait"]) if row["status"] == "pending" else None


def test_an_open_breaker_parks_the_whole_endpoint_until_its_next_trial(conn, settings):
    endpoint = insert_endpoint(conn)
    refused, *backlog = [insert_delivery(conn, endpoint) for _ in range(50)]
    in_flight = insert_delivery(conn, endpoint)
    elsewhere = insert_delivery(conn)
    assert claim(in_flight, settings) is not None  # another worker's attempt: left alone

    assert park(claim(refused, settings), 120.0, "breaker open") == "deferred"

    for delivery_id in [refused, *backlog]:
        assert 110 < wait_seconds(conn, delivery_id) <= 120
    assert wait_seconds(conn, elsewhere) <= 0  # another endpoint: still due now
    assert wait_seconds(conn, in_flight) <= 0


def test_the_first_claim_starts_the_schedules_clock(conn, settings):
    delivery_id = insert_delivery(conn)
    claim(delivery_id, settings)
    row = conn.execute(
        "SELECT extract(epoch FROM give_up_at - now()) AS left FROM webhook_deliveries"
        " WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    assert round_seconds(settings) == pytest.approx(120 * (1 + settings.delivery_retry_jitter))
    assert round_seconds(settings) - 5 < float(row["left"]) <= round_seconds(settings)


def test_parked_past_its_schedule_a_message_ends_failed_with_the_reason(conn, settings):
    delivery_id = insert_delivery(conn)
    claimed = claim(delivery_id, settings)
    assert park(claimed, round_seconds(settings) + 60, "breaker 'webhook:x' open") == "failed"
    row = conn.execute(
        "SELECT status, last_error, next_attempt_at FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    assert row["status"] == "failed" and row["next_attempt_at"] is None
    assert row["last_error"].startswith("failed: the receiver was unavailable past the retry")


def test_parking_skips_rows_another_worker_holds_instead_of_waiting(conn, settings, database_url):
    """Two workers refused by the same open breaker park the same endpoint at once:
    each takes what the other does not hold (waiting on each other deadlocked)."""
    endpoint = insert_endpoint(conn)
    refused, held, *backlog = [insert_delivery(conn, endpoint) for _ in range(10)]
    claimed = claim(refused, settings)
    with psycopg.connect(database_url) as other:  # another worker's PARK, mid-transaction
        other.execute("SELECT id FROM webhook_deliveries WHERE id = %s FOR UPDATE", (held,))
        done = []
        thread = threading.Thread(target=lambda: done.append(park(claimed, 60.0, "open")))
        thread.start()
        thread.join(10)
        assert done == ["deferred"], "parking waited for a row another worker holds"
        other.rollback()
    assert wait_seconds(conn, held) <= 0  # left to the worker that holds it
    assert all(50 < wait_seconds(conn, m) <= 60 for m in backlog)


def due(conn) -> set[str]:
    """What a dispatch run would enqueue now (the rows are stamped as it would)."""
    return {
        row["id"]
        for row in conn.execute(CLAIM_DUE, {"redispatch": 300, "batch": 10_000, "lookahead": 1.5})
    }


def test_a_parked_endpoints_due_messages_are_neither_dispatched_nor_claimed(
    conn, settings, database_url
):
    """Rows the PARK could not move (another worker held them) are still due: the
    endpoint's mark keeps the dispatcher and the claim off them until it ends."""
    endpoint = insert_endpoint(conn)
    refused, held = insert_delivery(conn, endpoint), insert_delivery(conn, endpoint)
    elsewhere = insert_delivery(conn)
    claimed = claim(refused, settings)
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM webhook_deliveries WHERE id = %s FOR UPDATE", (held,))
        assert park(claimed, 60.0, "open") == "deferred"
        other.rollback()
    assert wait_seconds(conn, held) <= 0  # due, but its endpoint is parked
    dispatched = due(conn)
    assert elsewhere in dispatched and held not in dispatched
    assert claim(held, settings) is None
    conn.execute("UPDATE webhook_endpoints SET parked_until = now() WHERE id = %s", (endpoint,))
    conn.execute("UPDATE webhook_deliveries SET dispatched_at = NULL WHERE id = %s", (held,))
    assert held in due(conn)  # the park is over


def test_a_trial_that_closes_the_breaker_resumes_the_parked_messages(conn, settings):
    endpoint = insert_endpoint(conn)
    refused, *backlog = [insert_delivery(conn, endpoint) for _ in range(5)]
    later = insert_delivery(conn, endpoint)
    conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE id = %s",
        (later,),
    )  # a retry scheduled past the park: not the park's to bring forward
    assert park(claim(refused, settings), 120.0, "breaker open") == "deferred"
    assert unpark(endpoint) == 5
    for delivery_id in [refused, *backlog]:
        assert wait_seconds(conn, delivery_id) <= 0
    assert wait_seconds(conn, later) > 3500
    row = conn.execute(
        "SELECT parked_until FROM webhook_endpoints WHERE id = %s", (endpoint,)
    ).fetchone()
    assert row["parked_until"] is None
    assert unpark(endpoint) == 0  # once
