"""Recover and bulk retry through the API: a job is stored and answered 202, shown and
listed under /jobs; bad windows and filters are refused naming the field; the same
key or the same request while unfinished returns the same job. The API in-process on
a database of this module's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from common.config import load_settings
from tests.support.api import ADMIN, TOKEN, bearer, new_key
from tests.support.stack import fresh_database

URL = "http://93.184.216.34/hook"


@pytest.fixture(scope="module")
def database_url():
    with fresh_database() as url:
        yield url


@pytest.fixture
def client(settings_env, database_url, redis_client):
    settings = load_settings(
        {
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "MESSAGE_RETENTION_DAYS": "30",
            "EVENT_TYPES_STRICT": "true",
        },
        wait_seconds=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def new_app(client) -> str:
    created = client.post("/v1/apps", json={"name": "recover"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def new_endpoint(client, app: str) -> dict:
    created = client.post(f"/v1/apps/{app}/endpoints", json={"url": URL}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()


def recover(client, app: str, endpoint: str, body: dict, key: str | None = None):
    headers = {**ADMIN, **({"Idempotency-Key": key} if key else {})}
    return client.post(f"/v1/apps/{app}/endpoints/{endpoint}/recover", json=body, headers=headers)


def refused_field(response) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    return error["details"][0]["field"]


def test_recover_answers_202_with_a_queued_job_shown_and_listed_newest_first(client):
    app = new_app(client)
    endpoint = new_endpoint(client, app)
    since = ago(hours=3)
    answered = recover(client, app, endpoint["id"], {"since": since})
    assert answered.status_code == 202, answered.text
    job = answered.json()
    assert job["id"].startswith("job_") and job["kind"] == "recover"
    assert (job["status"], job["total"], job["done_count"]) == ("queued", None, 0)
    assert job["finished_at"] is None and job["error"] is None
    assert job["filter"]["status"] == "failed" and job["filter"]["endpoint_id"] == endpoint["id"]
    assert job["filter"]["event_type"] is None
    assert datetime.fromisoformat(job["filter"]["since"]) == datetime.fromisoformat(since)
    # until defaulted to the time of the request.
    until = datetime.fromisoformat(job["filter"]["until"])
    assert abs((until - datetime.fromisoformat(job["created_at"])).total_seconds()) < 1

    shown = client.get(f"/v1/apps/{app}/jobs/{job['id']}", headers=ADMIN)
    assert shown.status_code == 200 and shown.json() == job
    by_uid = client.patch(
        f"/v1/apps/{app}/endpoints/{endpoint['id']}", json={"uid": "e1"}, headers=ADMIN
    )
    assert by_uid.status_code == 200
    second = recover(client, app, "e1", {"since": ago(hours=2), "until": ago(hours=1)}).json()
    assert second["id"] != job["id"] and second["filter"]["endpoint_id"] == endpoint["id"]
    listed = client.get(f"/v1/apps/{app}/jobs?limit=1", headers=ADMIN).json()
    assert [j["id"] for j in listed["data"]] == [second["id"]] and not listed["done"]
    rest = client.get(f"/v1/apps/{app}/jobs?iterator={listed['iterator']}", headers=ADMIN).json()
    assert [j["id"] for j in rest["data"]] == [job["id"]] and rest["done"]

    # Another application sees none of it.
    other = new_app(client)
    assert client.get(f"/v1/apps/{other}/jobs/{job['id']}", headers=ADMIN).status_code == 404
    assert client.get(f"/v1/apps/{other}/jobs", headers=ADMIN).json()["data"] == []
    assert recover(client, other, endpoint["id"], {"since": since}).status_code == 404


def test_bad_windows_are_refused_naming_the_field(client):
    app = new_app(client)
    endpoint = new_endpoint(client, app)["id"]
    assert (
        refused_field(
            recover(client, app, endpoint, {"since": ago(hours=1), "until": ago(hours=2)})
        )
        == "until"
    )
    same = ago(hours=1)
    assert refused_field(recover(client, app, endpoint, {"since": same, "until": same})) == "until"
    too_old = recover(client, app, endpoint, {"since": ago(days=31)})
    assert refused_field(too_old) == "since"
    assert "MESSAGE_RETENTION_DAYS (30 days)" in too_old.json()["error"]["message"]
    too_long = recover(client, app, endpoint, {"since": ago(days=29), "until": ago(days=-2)})
    assert refused_field(too_long) == "until"
    assert refused_field(recover(client, app, endpoint, {"since": ago(hours=-1)})) == "since"
    # RFC 3339 needs an offset; a missing since and unknown fields are refused too.
    naive = datetime.now().replace(microsecond=0).isoformat()
    assert refused_field(recover(client, app, endpoint, {"since": naive})) == "since"
    assert refused_field(recover(client, app, endpoint, {"until": ago(hours=1)})) == "since"
    assert refused_field(recover(client, app, endpoint, {"since": same, "limit": 5})) == "limit"
    assert client.get(f"/v1/apps/{app}/jobs", headers=ADMIN).json()["data"] == []


def test_a_disabled_endpoint_is_refused_and_a_read_only_key_may_not_start_jobs(client):
    app = new_app(client)
    endpoint = new_endpoint(client, app)["id"]
    client.post(f"/v1/apps/{app}/endpoints/{endpoint}/disable", headers=ADMIN)
    answered = recover(client, app, endpoint, {"since": ago(hours=1)})
    assert answered.status_code == 409 and answered.json()["error"]["code"] == "endpoint_disabled"
    assert recover(client, app, "ep_nope", {"since": ago(hours=1)}).status_code == 404
    reader = bearer(new_key(client, f"app:{app}:read"))
    path = f"/v1/apps/{app}/endpoints/{endpoint}/recover"
    assert client.post(path, json={"since": ago(hours=1)}, headers=reader).status_code == 403
    assert client.get(f"/v1/apps/{app}/jobs", headers=reader).status_code == 200


def test_the_same_key_or_the_same_unfinished_request_returns_the_same_job(client, database_url):
    app = new_app(client)
    endpoint = new_endpoint(client, app)["id"]
    body = {"since": ago(hours=2)}
    first = recover(client, app, endpoint, body, key="recover-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = recover(client, app, endpoint, body, key="recover-1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    other = recover(client, app, endpoint, {"since": ago(hours=1)}, key="recover-1")
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    # Without a key, the identical request while that job is queued or running gets it too
    # (the same instant spelled in another offset is the same request).
    east = timezone(timedelta(hours=2))
    shifted = datetime.fromisoformat(body["since"]).astimezone(east).isoformat()
    twin = recover(client, app, endpoint, {"since": shifted})
    assert twin.json()["id"] == first.json()["id"] and twin.headers["Idempotent-Replayed"] == "true"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhook_jobs SET status = 'done' WHERE id = %s", (first.json()["id"],))
    fresh = recover(client, app, endpoint, body)
    assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    # The key still answers with its own job, done or not.
    assert recover(client, app, endpoint, body, key="recover-1").json()["id"] == first.json()["id"]


def test_bulk_retry_by_filter_is_a_job_and_refuses_what_it_cannot_filter_on(client):
    app = new_app(client)
    endpoint = new_endpoint(client, app)
    created = client.post("/v1/event-types", json={"name": "order.paid"}, headers=ADMIN)
    assert created.status_code in (201, 409), created.text
    path = f"/v1/apps/{app}/messages/retry"
    answered = client.post(path, json={"status": "failed"}, headers=ADMIN)
    assert answered.status_code == 202, answered.text
    job = answered.json()
    assert job["kind"] == "retry" and job["filter"]["endpoint_id"] is None
    since = datetime.fromisoformat(job["filter"]["since"])
    assert abs((datetime.now(UTC) - timedelta(days=30) - since).total_seconds()) < 60
    # The same filter while it is unfinished: the same job.
    assert client.post(path, json={"status": "failed"}, headers=ADMIN).json()["id"] == job["id"]

    narrowed = client.post(
        path,
        json={
            "status": "failed",
            "event_type": "order.paid",
            "endpoint_id": endpoint["id"],
            "since": ago(hours=5),
        },
        headers=ADMIN,
    )
    assert narrowed.status_code == 202, narrowed.text
    assert narrowed.json()["filter"]["event_type"] == "order.paid"
    assert narrowed.json()["filter"]["endpoint_id"] == endpoint["id"]

    delivered = client.post(path, json={"status": "delivered"}, headers=ADMIN)
    assert refused_field(delivered) == "status"
    assert refused_field(client.post(path, json={}, headers=ADMIN)) == "status"
    unknown = client.post(path, json={"status": "failed", "endpoint_id": "ep_nope"}, headers=ADMIN)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_endpoint"
    untyped = client.post(path, json={"status": "failed", "event_type": "no.such"}, headers=ADMIN)
    assert untyped.status_code == 422
    assert untyped.json()["error"]["code"] == "unknown_event_type"
    old = client.post(path, json={"status": "failed", "since": ago(days=40)}, headers=ADMIN)
    assert refused_field(old) == "since"
    client.post(f"/v1/apps/{app}/endpoints/{endpoint['id']}/disable", headers=ADMIN)
    disabled = client.post(
        path, json={"status": "failed", "endpoint_id": endpoint["id"]}, headers=ADMIN
    )
    assert disabled.status_code == 409


def cancel(client, app: str, job_id: str, headers=ADMIN):
    return client.post(f"/v1/apps/{app}/jobs/{job_id}/cancel", headers=headers)


def test_a_queued_job_is_cancelled_once_and_the_same_request_may_then_start_anew(client):
    app = new_app(client)
    endpoint = new_endpoint(client, app)["id"]
    body = {"since": ago(hours=2)}
    job_id = recover(client, app, endpoint, body).json()["id"]
    answered = cancel(client, app, job_id)
    assert answered.status_code == 200, answered.text
    job = answered.json()
    assert (job["status"], job["total"], job["done_count"]) == ("cancelled", None, 0)
    assert job["finished_at"] is not None
    assert client.get(f"/v1/apps/{app}/jobs/{job_id}", headers=ADMIN).json() == job
    again = cancel(client, app, job_id)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    assert "already cancelled" in again.json()["error"]["message"]
    # Cancelled is finished: the identical request is a new job, not the cancelled one.
    fresh = recover(client, app, endpoint, body)
    assert fresh.status_code == 202 and "Idempotent-Replayed" not in fresh.headers
    assert fresh.json()["id"] != job_id and fresh.json()["status"] == "queued"


def test_a_finished_job_is_409_another_apps_404_and_a_read_only_key_403(client, database_url):
    app, other = new_app(client), new_app(client)
    endpoint = new_endpoint(client, app)["id"]
    done = recover(client, app, endpoint, {"since": ago(hours=2)}).json()["id"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE webhook_jobs SET status = 'done', finished_at = now() WHERE id = %s", (done,)
        )
    refused = cancel(client, app, done)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "job_finished"
    assert "already done" in refused.json()["error"]["message"]

    queued = recover(client, app, endpoint, {"since": ago(hours=1)}).json()["id"]
    elsewhere = cancel(client, other, queued)
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "job_not_found"
    stranger = bearer(new_key(client, f"app:{other}"))
    assert cancel(client, app, queued, stranger).status_code == 404
    reader = bearer(new_key(client, f"app:{app}:read"))
    assert cancel(client, app, queued, reader).status_code == 403
    assert cancel(client, app, "job_nope").status_code == 404
    assert client.get(f"/v1/apps/{app}/jobs/{queued}", headers=ADMIN).json()["status"] == "queued"
