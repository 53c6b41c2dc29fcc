"""A retry asked for while a worker is attempting the message is never undone
by that attempt's record: the attempt is recorded as it ended, then a new round
starts at once. On a real (migrated) PostgreSQL, the API in-process."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings, set_settings
from common.delivery.retry_schedule import Outcome
from tests.support.message_rows import insert_delivery, insert_endpoint
from tests.support.stack import fresh_database
from worker.delivery.post import AttemptResult
from worker.delivery.queries import claim, record_with_retries

pytestmark = pytest.mark.slow

TOKEN = "test-admin-token-0123456789"


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


@pytest.fixture
def settings(settings_env, database_url, redis_client):
    settings = load_settings(
        {
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "DELIVERY_RETRY_SCHEDULE": "1m",  # one retry: the second failure is final
        },
        wait_seconds=0,
    )
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def row(conn, delivery_id: str) -> dict:
    return conn.execute(
        "SELECT status, schedule_position, retry_requested,"
        " extract(epoch FROM next_attempt_at - now()) AS wait"
        " FROM webhook_deliveries WHERE id = %s",
        (delivery_id,),
    ).fetchone()


def test_a_retry_during_the_last_attempt_starts_a_new_round_after_it(conn, settings):
    endpoint = insert_endpoint(conn, "http://93.184.216.34/hook")
    delivery_id = insert_delivery(conn, endpoint)
    conn.execute(
        "UPDATE webhook_deliveries SET schedule_position = 1 WHERE id = %s", (delivery_id,)
    )
    claimed = claim(delivery_id, settings)  # the last attempt of the schedule is in flight

    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        asked = api.post(
            f"/v1/messages/msg_{delivery_id[4:]}/retry",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert asked.status_code == 202, asked.text
    assert row(conn, delivery_id)["retry_requested"] is True

    failed = AttemptResult(Outcome(status_code=500), datetime.now(UTC), 5, "oops")
    assert record_with_retries(claimed, failed, settings) == "failed"  # what the attempt said
    after = row(conn, delivery_id)
    assert after["status"] == "pending" and after["schedule_position"] == 0
    assert after["retry_requested"] is False and float(after["wait"]) <= 0  # due at once
    attempts = conn.execute(
        "SELECT status_code FROM webhook_attempts WHERE delivery_id = %s", (delivery_id,)
    ).fetchall()
    assert [a["status_code"] for a in attempts] == [500]  # the attempt is recorded all the same
