"""A recover job's statements step by step on real PostgreSQL: batches re-queue each
failed delivery of the window once, paced, with the cursor and done_count in the same
transaction; a dead worker's job is resumed from its cursor; a paused endpoint's
deliveries wait; a job of the whole application goes through its enabled endpoints;
and the retention purge and privacy expunges never leave a pending delivery without
its content. The API in-process makes the jobs; a database of this module's own."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings, set_settings
from common.delivery.recover_window import RETENTION_MARGIN
from tests.support.api import ADMIN, TOKEN
from tests.support.message_rows import insert_delivery, insert_endpoint, insert_message
from tests.support.stack import fresh_database
from worker.delivery.queries import CLAIM_DUE
from worker.delivery.resources import execute
from worker.jobs.queries import claim, count_total, requeue_step
from worker.jobs.tasks import advance_all
from worker.tasks.retention import purge

SLOW = 0.2  # deliveries a second: 5 s apart, so what is due now and what later is clear
AHEAD = timedelta(seconds=15)  # three of them per step


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


def settings_for(settings_env, database_url, **extra: str):
    return load_settings(
        {
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "MESSAGE_RETENTION_DAYS": "30",
            "ATTEMPT_RETENTION_DAYS": "90",
            **extra,
        },
        wait_seconds=0,
    )


@pytest.fixture
def settings(settings_env, database_url, redis_client):
    settings = settings_for(settings_env, database_url)
    set_settings(settings)
    yield settings
    set_settings(None)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def conn(database_url):
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        # Jobs of earlier tests must not take this one's share of the rate or its ticks.
        connection.execute("UPDATE webhook_jobs SET status = 'done' WHERE status <> 'done'")
        yield connection


def failed(conn, endpoint: str, age: timedelta, event_type: str = "t") -> str:
    """A failed delivery to ``endpoint`` of a new message ``age`` old."""
    message = insert_message(conn)
    conn.execute(
        "UPDATE webhook_messages SET created_at = now() - %s, event_type = %s WHERE id = %s",
        (age, event_type, message),
    )
    delivery = insert_delivery(conn, endpoint, message, "failed")
    conn.execute(
        "UPDATE webhook_deliveries SET created_at = now() - %s, attempt_count = 3,"
        " schedule_position = 3, give_up_at = now() - interval '1 minute',"
        " last_error = 'HTTP 500' WHERE id = %s",
        (age, delivery),
    )
    return delivery


def rows(conn, ids: list[str]) -> dict[str, dict]:
    found = conn.execute(
        "SELECT id, status, schedule_position, give_up_at, next_attempt_at, dispatched_at"
        " FROM webhook_deliveries WHERE id = ANY(%s)",
        (ids,),
    ).fetchall()
    return {row["id"]: row for row in found}


def job_row(conn, job_id: str) -> dict:
    return conn.execute("SELECT * FROM webhook_jobs WHERE id = %s", (job_id,)).fetchone()


def start_recover(client, endpoint: str, since: timedelta, until: timedelta | None = None) -> str:
    now = datetime.now(UTC)
    body = {"since": (now - since).isoformat()}
    if until is not None:
        body["until"] = (now - until).isoformat()
    answered = client.post(
        f"/v1/apps/app_default/endpoints/{endpoint}/recover", json=body, headers=ADMIN
    )
    assert answered.status_code == 202, answered.text
    return answered.json()["id"]


def dispatched(ids: list[str]) -> list[str]:
    """Which of ``ids`` the dispatcher enqueues now."""
    return [
        r["id"]
        for r in execute(CLAIM_DUE, {"redispatch": 0, "batch": 1000, "lookahead": 1.5})
        if r["id"] in ids
    ]


def time_passes(conn, job_id: str) -> None:
    """What the next tick sees once the job's schedule has become due."""
    conn.execute("UPDATE webhook_jobs SET due_frontier = NULL WHERE id = %s", (job_id,))


def test_batches_requeue_each_failed_delivery_of_the_window_once_paced(client, conn, settings):
    endpoint, other = insert_endpoint(conn), insert_endpoint(conn)
    window = [failed(conn, endpoint, timedelta(minutes=50 - n)) for n in range(7)]
    before = failed(conn, endpoint, timedelta(hours=3))  # created before since
    elsewhere = failed(conn, other, timedelta(minutes=30))
    delivered = insert_delivery(conn, endpoint, None, "delivered")
    job_id = start_recover(client, endpoint, since=timedelta(hours=1))
    token, job = claim(job_id)
    assert claim(job_id) is None  # the lease is this worker's
    assert count_total(job, token, settings) == 7

    first = requeue_step(job_id, token, SLOW, AHEAD, settings)
    assert (first.outcome, first.requeued) == ("requeued", 3)
    state = rows(conn, window)
    taken = [state[d] for d in window[:3]]
    assert all(r["status"] == "pending" and r["schedule_position"] == 0 for r in taken)
    assert all(r["give_up_at"] is None and r["dispatched_at"] is None for r in taken)
    # Due 5 s apart in order of creation: the dispatcher takes only the first now.
    due = [r["next_attempt_at"] for r in taken]
    assert [(b - a).total_seconds() for a, b in zip(due, due[1:], strict=False)] == [5.0, 5.0]
    assert dispatched(window) == [window[0]]
    assert {state[d]["status"] for d in window[3:]} == {"failed"}
    progress = job_row(conn, job_id)
    assert progress["done_count"] == 3 and progress["cursor_delivery_id"] == window[2]
    # The schedule is filled 15 s ahead: nothing more this tick.
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).outcome == "ahead"

    # A delivery already taken that fails again is behind the cursor: never taken twice.
    conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE id = %s", (window[0],))
    time_passes(conn, job_id)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).requeued == 3
    time_passes(conn, job_id)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).requeued == 1
    time_passes(conn, job_id)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).outcome == "finished"
    done = job_row(conn, job_id)
    assert (done["status"], done["done_count"], done["total"]) == ("done", 7, 7)
    assert done["finished_at"] is not None and done["lease_token"] is None
    state = rows(conn, [*window, before, elsewhere, delivered])
    assert [state[d]["status"] for d in window] == ["failed"] + ["pending"] * 6
    assert state[before]["status"] == state[elsewhere]["status"] == "failed"
    assert state[delivered]["status"] == "delivered"
    assert claim(job_id) is None  # finished: nothing more, ever


def test_a_dead_workers_job_is_resumed_from_its_cursor_and_its_old_lease_is_void(
    client, conn, settings
):
    endpoint = insert_endpoint(conn)
    window = [failed(conn, endpoint, timedelta(minutes=20 - n)) for n in range(5)]
    job_id = start_recover(client, endpoint, since=timedelta(hours=1))
    dead, job = claim(job_id)
    count_total(job, dead, settings)
    assert requeue_step(job_id, dead, SLOW, AHEAD, settings).requeued == 3
    # The worker dies without releasing; its first three fail again meanwhile.
    conn.execute("UPDATE webhook_deliveries SET status = 'failed' WHERE id = ANY(%s)", (window,))
    assert claim(job_id) is None
    conn.execute(
        "UPDATE webhook_jobs SET leased_until = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )
    alive, _ = claim(job_id)
    assert requeue_step(job_id, dead, SLOW, AHEAD, settings).outcome == "lost"
    time_passes(conn, job_id)
    assert requeue_step(job_id, alive, SLOW, AHEAD, settings).requeued == 2
    assert requeue_step(job_id, alive, SLOW, AHEAD, settings).outcome == "finished"
    state = rows(conn, window)
    assert [state[d]["status"] for d in window] == ["failed"] * 3 + ["pending"] * 2
    assert job_row(conn, job_id)["done_count"] == 5 and job_row(conn, job_id)["total"] == 5


def test_a_paused_endpoints_deliveries_wait_for_resume_and_a_disabled_one_fails_the_job(
    client, conn, settings
):
    paused = insert_endpoint(conn)
    kept = [failed(conn, paused, timedelta(minutes=10 - n)) for n in range(2)]
    job_id = start_recover(client, paused, since=timedelta(hours=1))
    client.post(f"/v1/endpoints/{paused}/pause", headers=ADMIN)
    assert advance_all(settings) == 2
    assert job_row(conn, job_id)["status"] == "done"
    state = rows(conn, kept)
    assert {(r["status"], r["next_attempt_at"]) for r in state.values()} == {("pending", None)}
    client.post(f"/v1/endpoints/{paused}/resume", headers=ADMIN)
    assert sorted(dispatched(kept)) == sorted(kept)

    disabled = insert_endpoint(conn)
    lost = failed(conn, disabled, timedelta(minutes=5))
    job_id = start_recover(client, disabled, since=timedelta(hours=1))
    client.post(f"/v1/endpoints/{disabled}/disable", headers=ADMIN)
    assert advance_all(settings) == 0
    stopped = job_row(conn, job_id)
    assert stopped["status"] == "failed" and "was disabled" in stopped["error"]
    assert rows(conn, [lost])[lost]["status"] == "failed"


def test_a_retry_by_filter_goes_through_each_enabled_endpoint_of_the_application(
    client, conn, settings
):
    app = client.post("/v1/apps", json={"name": "bulk"}, headers=ADMIN).json()["id"]
    endpoints = [
        client.post(
            f"/v1/apps/{app}/endpoints", json={"url": "http://93.184.216.34/"}, headers=ADMIN
        ).json()["id"]
        for _ in range(3)
    ]
    client.post(f"/v1/apps/{app}/endpoints/{endpoints[2]}/disable", headers=ADMIN)
    paid = {
        ep: [failed(conn, ep, timedelta(minutes=m), "order.paid") for m in (9, 8)]
        for ep in endpoints
    }
    other_type = failed(conn, endpoints[0], timedelta(minutes=7), "order.refunded")
    foreign = failed(conn, insert_endpoint(conn), timedelta(minutes=7), "order.paid")
    answered = client.post(
        f"/v1/apps/{app}/messages/retry",
        json={"status": "failed", "event_type": "order.paid"},
        headers=ADMIN,
    )
    job_id = answered.json()["id"]
    fast = settings_for_rate(settings, 1000)
    while job_row(conn, job_id)["status"] != "done":
        advance_all(fast)
    done = job_row(conn, job_id)
    assert (done["total"], done["done_count"]) == (4, 4)
    state = rows(conn, [*sum(paid.values(), []), other_type, foreign])
    for ep in endpoints[:2]:
        assert {state[d]["status"] for d in paid[ep]} == {"pending"}
    assert {state[d]["status"] for d in paid[endpoints[2]]} == {"failed"}  # disabled
    assert state[other_type]["status"] == state[foreign]["status"] == "failed"


def settings_for_rate(settings, rate: float):
    return settings.model_copy(update={"recover_rate_per_second": rate})


def test_requeued_deliveries_keep_their_messages_and_the_edge_is_left_to_the_purge(
    client, conn, settings, settings_env, database_url
):
    endpoint = insert_endpoint(conn)
    recovered = failed(conn, endpoint, timedelta(hours=2))
    edge = failed(conn, endpoint, timedelta(days=30) - RETENTION_MARGIN / 2)
    job_id = start_recover(client, endpoint, since=timedelta(days=30) - timedelta(seconds=30))
    assert advance_all(settings) == 1  # the delivery near expiry is left alone
    assert job_row(conn, job_id)["status"] == "done"
    untouched = failed(conn, endpoint, timedelta(hours=2))

    # Retention shortened to an hour: what the job re-queued (pending) keeps its content,
    # the failed one beside it of the same age loses it.
    short = settings_for(settings_env, database_url, MESSAGE_RETENTION_DAYS=str(1 / 24))
    assert purge(short)["expunged"] >= 2
    content = conn.execute(
        "SELECT d.id, m.expunged_at, m.body FROM webhook_deliveries d"
        " JOIN webhook_messages m ON m.id = d.message_id WHERE d.id = ANY(%s)",
        ([recovered, edge, untouched],),
    ).fetchall()
    content = {row["id"]: row for row in content}
    assert content[recovered]["expunged_at"] is None and content[recovered]["body"]
    assert content[untouched]["expunged_at"] is not None
    assert content[edge]["expunged_at"] is not None
    assert rows(conn, [edge])[edge]["status"] == "failed"


def test_a_privacy_expunge_and_a_batch_wait_for_each_other(client, conn, settings):
    endpoint = insert_endpoint(conn)
    first = failed(conn, endpoint, timedelta(minutes=3))
    job_id = start_recover(client, endpoint, since=timedelta(hours=1))
    token, job = claim(job_id)
    count_total(job, token, settings)
    message = conn.execute(
        "SELECT message_id FROM webhook_deliveries WHERE id = %s", (first,)
    ).fetchone()["message_id"]

    # The expunge holds the message (as DELETE …/content does) while the batch runs.
    with psycopg.connect(conn.info.dsn) as privacy:
        privacy.execute("SELECT 1 FROM webhook_messages WHERE id = %s FOR UPDATE", (message,))
        privacy.execute(
            "UPDATE webhook_messages SET payload = NULL, body = '', expunged_at = now(),"
            " expunge_reason = 'request' WHERE id = %s",
            (message,),
        )
        outcome = []
        batch = threading.Thread(
            target=lambda: outcome.append(requeue_step(job_id, token, SLOW, AHEAD, settings))
        )
        batch.start()
        time.sleep(0.5)
        assert batch.is_alive()  # waiting for the message
        privacy.commit()
        batch.join(10)
    assert outcome[0].requeued == 0
    assert rows(conn, [first])[first]["status"] == "failed"  # no pending delivery of nothing
    assert job_row(conn, job_id)["cursor_delivery_id"] == first

    # The other order: re-queued first, the expunge then fails what is pending.
    second = failed(conn, endpoint, timedelta(minutes=2))
    time_passes(conn, job_id)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).requeued == 1
    other = conn.execute(
        "SELECT message_id FROM webhook_deliveries WHERE id = %s", (second,)
    ).fetchone()["message_id"]
    assert client.delete(f"/v1/messages/{other}/content", headers=ADMIN).status_code == 204
    assert rows(conn, [second])[second]["status"] == "failed"


def test_a_purge_running_during_a_recover_never_leaves_a_pending_delivery_without_content(
    client, conn, settings_env, database_url, redis_client
):
    """Expired, near-expiry and recent failed deliveries of one endpoint; the purge runs
    in small batches in a thread while the job re-queues everything it may."""
    settings = settings_for(settings_env, database_url, RETENTION_BATCH="7")
    set_settings(settings)
    endpoint = insert_endpoint(conn)
    expired = [failed(conn, endpoint, timedelta(days=30, minutes=n)) for n in range(60)]
    edge = [failed(conn, endpoint, timedelta(days=30, minutes=-2, seconds=-n)) for n in range(60)]
    recent = [failed(conn, endpoint, timedelta(days=29, minutes=-n)) for n in range(120)]
    job_id = start_recover(client, endpoint, since=timedelta(days=30) - timedelta(minutes=1))
    purging = threading.Thread(target=purge, args=(settings,))
    purging.start()
    fast = settings_for_rate(settings, 100_000)
    while job_row(conn, job_id)["status"] != "done":
        advance_all(fast)
    purging.join(60)
    assert job_row(conn, job_id)["done_count"] == len(recent)
    orphans = conn.execute(
        "SELECT count(*) AS n FROM webhook_deliveries d JOIN webhook_messages m"
        " ON m.id = d.message_id WHERE d.endpoint_id = %s AND d.status = 'pending'"
        " AND (m.expunged_at IS NOT NULL OR m.body = '')",
        (endpoint,),
    ).fetchone()["n"]
    assert orphans == 0
    state = rows(conn, [*expired, *edge, *recent])
    assert {state[d]["status"] for d in recent} == {"pending"}
    assert {state[d]["status"] for d in expired + edge} == {"failed"}
    set_settings(None)


def cancel(client, job_id: str):
    answered = client.post(f"/v1/apps/app_default/jobs/{job_id}/cancel", headers=ADMIN)
    assert answered.status_code == 200, answered.text
    return answered.json()


def test_a_job_cancelled_mid_way_requeues_nothing_more_and_keeps_what_it_did(
    client, conn, settings
):
    endpoint = insert_endpoint(conn)
    window = [failed(conn, endpoint, timedelta(minutes=30 - n)) for n in range(7)]
    job_id = start_recover(client, endpoint, since=timedelta(hours=1))
    token, job = claim(job_id)
    count_total(job, token, settings)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).requeued == 3

    stopped = cancel(client, job_id)
    assert (stopped["status"], stopped["done_count"], stopped["total"]) == ("cancelled", 3, 7)
    assert stopped["finished_at"] is not None
    time_passes(conn, job_id)
    # The worker that holds the lease finds the job gone at its next batch.
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).outcome == "lost"
    assert claim(job_id) is None
    assert advance_all(settings_for_rate(settings, 1000)) == 0
    state = rows(conn, window)
    assert [state[d]["status"] for d in window] == ["pending"] * 3 + ["failed"] * 4
    row = job_row(conn, job_id)
    assert (row["status"], row["done_count"], row["lease_token"]) == ("cancelled", 3, None)


def test_a_cancel_waits_for_the_batch_in_progress_and_no_batch_commits_after_it(
    client, conn, settings
):
    endpoint = insert_endpoint(conn)
    window = [failed(conn, endpoint, timedelta(minutes=20 - n)) for n in range(5)]
    job_id = start_recover(client, endpoint, since=timedelta(hours=1))
    token, job = claim(job_id)
    count_total(job, token, settings)
    message = conn.execute(
        "SELECT message_id FROM webhook_deliveries WHERE id = %s", (window[0],)
    ).fetchone()["message_id"]

    # A privacy request holds the batch's first message: the batch has locked the job and
    # waits; the cancel then waits for the batch.
    with psycopg.connect(conn.info.dsn) as privacy:
        privacy.execute("SELECT 1 FROM webhook_messages WHERE id = %s FOR UPDATE", (message,))
        outcome, stopped = [], []
        batch = threading.Thread(
            target=lambda: outcome.append(requeue_step(job_id, token, SLOW, AHEAD, settings))
        )
        batch.start()
        time.sleep(0.5)
        cancelling = threading.Thread(target=lambda: stopped.append(cancel(client, job_id)))
        cancelling.start()
        time.sleep(0.5)
        assert batch.is_alive() and cancelling.is_alive()
        privacy.rollback()
        batch.join(10)
        cancelling.join(10)
    assert outcome[0].requeued == 3
    assert (stopped[0]["status"], stopped[0]["done_count"]) == ("cancelled", 3)
    time_passes(conn, job_id)
    assert requeue_step(job_id, token, SLOW, AHEAD, settings).outcome == "lost"
    state = rows(conn, window)
    assert [state[d]["status"] for d in window] == ["pending"] * 3 + ["failed"] * 2
