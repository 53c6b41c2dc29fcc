"""Every attempt is recorded or the message ends, on a real (migrated)
PostgreSQL: values PostgreSQL refuses are recorded without the receiver's
details; a message claimed again and again without a recorded attempt (its
worker dies each time, or the record is refused) ends ``failed`` with the
reason; attempt ids are 64-bit."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import load_settings, set_settings
from common.delivery.retry_schedule import Outcome
from tests.support.message_rows import insert_delivery, lapse_lease
from tests.support.stack import fresh_database
from worker.delivery.post import AttemptResult
from worker.delivery.queries import claim, give_up, record_with_retries

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
    """The worker's delivery statements run on this module's database."""
    settings = load_settings(
        {**settings_env, "DATABASE_URL": database_url, "DELIVERY_MAX_UNRECORDED_ATTEMPTS": "3"},
        wait_seconds=0,
    )
    set_settings(settings)
    yield settings
    set_settings(None)


def answer(excerpt: str | None = "ok", status: int = 500, error: str | None = None):
    return AttemptResult(Outcome(status_code=status, error=error), datetime.now(UTC), 7, excerpt)


def test_each_claim_counts_until_an_attempt_is_recorded(conn, settings):
    delivery_id = insert_delivery(conn)
    assert claim(delivery_id, settings).unrecorded_claims == 1
    lapse_lease(conn, delivery_id)
    claimed = claim(delivery_id, settings)
    assert claimed.unrecorded_claims == 2
    assert record_with_retries(claimed, answer(), settings) == "pending"
    row = conn.execute(
        "SELECT unrecorded_claims FROM webhook_deliveries WHERE id = %s", (delivery_id,)
    ).fetchone()
    assert row["unrecorded_claims"] == 0


def test_a_message_whose_attempts_are_never_recorded_ends_failed_with_the_reason(conn, settings):
    delivery_id = insert_delivery(conn)
    for _ in range(settings.delivery_max_unrecorded_attempts):
        claim(delivery_id, settings)
        lapse_lease(conn, delivery_id)
    claimed = claim(delivery_id, settings)
    assert claimed.unrecorded_claims > settings.delivery_max_unrecorded_attempts
    give_up(claimed, settings)
    row = conn.execute(
        "SELECT status, last_error, next_attempt_at FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    assert row["status"] == "failed" and row["next_attempt_at"] is None
    assert row["last_error"].startswith("gave up: 3 attempts were never recorded")


def test_a_value_postgresql_refuses_is_recorded_without_the_details(conn, settings):
    """NUL cannot be stored in text: the attempt is recorded all the same, saying so."""
    delivery_id = insert_delivery(conn)
    claimed = claim(delivery_id, settings)
    state = record_with_retries(claimed, answer("bad\x00byte", error="Oops: a\x00b"), settings)
    assert state == "pending"
    attempt = conn.execute(
        "SELECT status_code, error, response_excerpt FROM webhook_attempts WHERE delivery_id = %s",
        (delivery_id,),
    ).fetchone()
    assert attempt["status_code"] == 500
    assert attempt["response_excerpt"] == "(details not stored: DataError)"
    assert attempt["error"] == "Oops (details not stored: DataError)"


def test_attempt_ids_go_past_32_bits(conn, settings):
    conn.execute("SELECT setval('webhook_attempts_id_seq', 2147483657)")
    delivery_id = insert_delivery(conn)
    assert record_with_retries(claim(delivery_id, settings), answer(), settings) == "pending"
    row = conn.execute(
        "SELECT id FROM webhook_attempts WHERE delivery_id = %s", (delivery_id,)
    ).fetchone()
    assert row["id"] > 2**31
