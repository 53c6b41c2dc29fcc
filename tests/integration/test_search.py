"""Search (issue 16): the message lists' filters (``event_type``, ``channel``,
``since``/``until`` with ``status``, ``endpoint_id`` and pages), the attempts lists
and an endpoint's stats, in process against the real PostgreSQL and Redis.

Each test builds a small data set through the API (messages of known types and
channels, fanned out to three endpoints), moves it to known times, records attempts
with the worker's own statements, and holds every answer to a brute-force reading of
the same rows in Python: exactly those rows, in order, every page of them once."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.app import create_app
from common.config import load_settings
from tests.support.api import ADMIN, TOKEN
from worker.delivery.queries import CLAIM_ONE, RECORD

URL = "http://93.184.216.34/hook"
TYPES = ["order.paid", "order.refunded", "user.created"]
CHANNEL_SETS = [None, ["eu"], ["us"], ["eu", "us"]]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=37)  # two messages at each time: ties page by id


@pytest.fixture
def client(settings_env, migrated_database_url, redis_client):
    """The API with no per-key rate limit: these tests page through many lists."""
    env = {**settings_env, "JENGA_ADMIN_TOKEN": TOKEN, "API_RATE_LIMIT_PER_SECOND": "0"}
    with TestClient(create_app(load_settings(env, wait_seconds=0))) as client:
        yield client


@pytest.fixture
def conn(migrated_database_url):
    with psycopg.connect(migrated_database_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@dataclass
class Sent:
    id: str
    event_type: str
    channels: list[str] | None
    created_at: datetime
    deliveries: dict[str, str] = field(default_factory=dict)  # endpoint id -> delivery id


@dataclass
class Dataset:
    app: str  # the path prefix, /v1/apps/{id}
    endpoints: dict[str, str]  # name -> id
    messages: list[Sent]


def post(client, path: str, body: dict) -> dict:
    response = client.post(path, json=body, headers=ADMIN)
    assert response.status_code in (201, 202), response.text
    return response.json()


def claim_and_record(conn, delivery_id: str, status: str, code: int | None, at: datetime):
    """One attempt, as a worker makes it: the claim, then RECORD (``status`` being the
    delivery's next state)."""
    token = uuid.uuid4().hex
    claimed = conn.execute(
        CLAIM_ONE, {"id": delivery_id, "token": token, "lease": 30, "round": 3600}
    ).fetchone()
    assert claimed is not None, delivery_id
    conn.execute(
        RECORD,
        {
            "id": delivery_id,
            "token": token,
            "status": status,
            "retry_in": 0.0,  # due again at once: the next attempt can be claimed
            "last_error": None if code and code < 300 else f"HTTP {code}",
            "started_at": at,
            "duration_ms": 7 + (code or 0) % 13,
            "status_code": code,
            "error": None if code else "ConnectError: refused",
            "excerpt": f"answer {code}",
            "disable_endpoint": False,
            "disabled_reason": None,
            "succeeded": code is not None and 200 <= code < 300,
            "disable_after": 0,  # never disabled for failing: these tests fail on purpose
            "failing_after": 0,
        },
    )


def dataset(client, conn) -> Dataset:
    """24 messages (each type with each channel set, twice), two at each of 12 times
    37 minutes apart from BASE, to three endpoints: ``all`` (orders), ``paid``
    (order.paid) and ``eu`` (channel eu). ``user.created`` off channel eu is unrouted.
    Each message's delivery to ``all``: delivered (i % 3 == 0), failed after a 503 and
    a connection error (i % 3 == 1), or pending untried."""
    app = "/v1/apps/" + post(client, "/v1/apps", {"name": f"s-{uuid.uuid4().hex[:6]}"})["id"]
    endpoints = {
        "all": post(client, f"{app}/endpoints", {"url": URL, "filter_types": TYPES[:2]})["id"],
        "paid": post(client, f"{app}/endpoints", {"url": URL, "filter_types": TYPES[:1]})["id"],
        "eu": post(client, f"{app}/endpoints", {"url": URL, "channels": ["eu"]})["id"],
    }
    messages = []
    combinations = list(itertools.product(TYPES, CHANNEL_SETS)) * 2
    for i, (event_type, channels) in enumerate(combinations):
        body = {"event_type": event_type, "payload": {"i": i}}
        if channels is not None:
            body["channels"] = channels
        sent = post(client, f"{app}/messages", body)
        created_at = BASE + STEP * (i // 2)
        conn.execute(
            "UPDATE webhook_messages SET created_at = %s WHERE id = %s", (created_at, sent["id"])
        )
        conn.execute(
            "UPDATE webhook_deliveries SET created_at = %s WHERE message_id = %s",
            (created_at, sent["id"]),
        )
        message = Sent(sent["id"], event_type, channels, created_at)
        message.deliveries = {d["endpoint_id"]: d["id"] for d in sent["deliveries"]}
        messages.append(message)
        to_all = message.deliveries.get(endpoints["all"])
        if to_all and i % 3 == 0:
            claim_and_record(conn, to_all, "delivered", 200, created_at + timedelta(seconds=1))
        elif to_all and i % 3 == 1:
            claim_and_record(conn, to_all, "pending", 503, created_at + timedelta(seconds=1))
            claim_and_record(conn, to_all, "failed", None, created_at + timedelta(seconds=9))
    return Dataset(app, endpoints, messages)


def statuses(conn, data: Dataset) -> dict[str, dict[str, str]]:
    """Each message's deliveries' states, read back: endpoint id -> status."""
    rows = conn.execute(
        "SELECT message_id, endpoint_id, status FROM webhook_deliveries WHERE message_id = ANY(%s)",
        ([m.id for m in data.messages],),
    )
    found: dict[str, dict[str, str]] = {m.id: {} for m in data.messages}
    for row in rows:
        found[row["message_id"]][row["endpoint_id"]] = row["status"]
    return found


def every_page(client, path: str, params: dict, limit: int) -> list[dict]:
    """Every item of a list, page after page; each page within ``limit``."""
    items, iterator = [], None
    for _ in range(1000):
        query = {**params, "limit": limit, **({"iterator": iterator} if iterator else {})}
        response = client.get(path, params=query, headers=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= limit
        items += body["data"]
        if body["done"]:
            assert body["iterator"] is None
            return items
        iterator = body["iterator"]
    raise AssertionError(f"{path} {params}: still not done after 1000 pages")


def iso(at: datetime) -> str:
    return at.isoformat()


WINDOWS = [
    {},
    {"since": iso(BASE + STEP * 3)},  # exactly the time of messages 6 and 7: included
    {"until": iso(BASE + STEP * 9)},  # exactly the time of messages 18 and 19: left out
    {"since": iso(BASE + STEP * 3), "until": iso(BASE + STEP * 9)},
    # The same instants in another offset.
    {"since": (BASE + STEP * 3).astimezone(timezone(timedelta(hours=-5))).isoformat()},
]


def in_window(at: datetime, window: dict) -> bool:
    since, until = window.get("since"), window.get("until")
    return (since is None or at >= datetime.fromisoformat(since)) and (
        until is None or at < datetime.fromisoformat(until)
    )


def routed_as_asked(states: dict[str, str], status: str | None, endpoint_id: str | None) -> bool:
    """What ``?status=&endpoint_id=`` keep: a message with a delivery to that endpoint in
    that state (``unrouted``: with no delivery)."""
    if status == "unrouted":
        return not states
    if status is None and endpoint_id is None:
        return True
    return any(endpoint_id in (None, ep) and status in (None, st) for ep, st in states.items())


def test_message_filters_return_exactly_the_matching_messages_newest_first(client, conn):
    data = dataset(client, conn)
    states = statuses(conn, data)
    newest_first = sorted(data.messages, key=lambda m: (m.created_at, m.id), reverse=True)
    for event_type, channel, window in itertools.product(
        [None, *TYPES, "no.such"], [None, "eu", "us", "asia"], WINDOWS
    ):
        params = {"event_type": event_type, "channel": channel, **window}
        params = {k: v for k, v in params.items() if v is not None}
        expected = [
            m.id
            for m in newest_first
            if (event_type is None or m.event_type == event_type)
            and (channel is None or channel in (m.channels or []))
            and in_window(m.created_at, window)
        ]
        got = client.get(f"{data.app}/messages", params=params, headers=ADMIN).json()
        assert [m["id"] for m in got["data"]] == expected, params
    for status, endpoint in itertools.product(
        [None, "pending", "delivered", "failed", "unrouted"], [None, "all", "eu"]
    ):
        endpoint_id = data.endpoints[endpoint] if endpoint else None
        for params in ({"event_type": "order.paid"}, {"channel": "eu", **WINDOWS[3]}):
            if status == "unrouted" and endpoint:
                continue  # a filter on deliveries of a message that has none
            expected = [
                m.id
                for m in newest_first
                if params.get("event_type") in (None, m.event_type)
                and params.get("channel") in (None, *(m.channels or []))
                and in_window(m.created_at, params)
                and routed_as_asked(states[m.id], status, endpoint_id)
            ]
            query = {**params, **({"status": status} if status else {})}
            query |= {"endpoint_id": endpoint_id} if endpoint_id else {}
            got = client.get(f"{data.app}/messages", params=query, headers=ADMIN).json()
            assert [m["id"] for m in got["data"]] == expected, query


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_of_a_filtered_list_hold_every_match_once(client, conn, limit):
    data = dataset(client, conn)
    for params in ({"channel": "us"}, {"event_type": "order.paid", **WINDOWS[3]}, WINDOWS[1]):
        whole = client.get(f"{data.app}/messages", params=params, headers=ADMIN).json()["data"]
        paged = every_page(client, f"{data.app}/messages", params, limit)
        assert [m["id"] for m in paged] == [m["id"] for m in whole] and whole, params
        assert len({m["id"] for m in paged}) == len(paged)
    endpoint = f"{data.app}/endpoints/{data.endpoints['all']}/messages"
    whole = client.get(endpoint, params={"channel": "eu"}, headers=ADMIN).json()["data"]
    paged = every_page(client, endpoint, {"channel": "eu"}, limit)
    assert [m["delivery_id"] for m in paged] == [m["delivery_id"] for m in whole] and whole


def test_an_endpoints_list_takes_the_same_filters(client, conn):
    data = dataset(client, conn)
    states = statuses(conn, data)
    for name, endpoint_id in data.endpoints.items():
        mine = sorted(
            (m for m in data.messages if endpoint_id in m.deliveries),
            key=lambda m: (m.created_at, m.deliveries[endpoint_id]),
            reverse=True,
        )
        for event_type, channel, window, status in itertools.product(
            [None, "order.paid", "user.created"],
            [None, "eu", "us"],
            WINDOWS[:4],
            [None, "pending", "delivered", "failed"],
        ):
            params = {"event_type": event_type, "channel": channel, "status": status, **window}
            params = {k: v for k, v in params.items() if v is not None}
            expected = [
                m.deliveries[endpoint_id]
                for m in mine
                if (event_type is None or m.event_type == event_type)
                and (channel is None or channel in (m.channels or []))
                and in_window(m.created_at, window)
                and status in (None, states[m.id][endpoint_id])
            ]
            path = f"{data.app}/endpoints/{endpoint_id}/messages"
            got = client.get(path, params=params, headers=ADMIN).json()
            assert [m["delivery_id"] for m in got["data"]] == expected, (name, params)


def attempt_rows(conn, where: str, value: str) -> list[dict]:
    return conn.execute(
        "SELECT a.id, a.delivery_id, d.message_id, d.endpoint_id, a.number, a.started_at,"
        " a.duration_ms, a.status_code, a.error, a.response_excerpt,"
        " d.created_at AS delivery_created_at"
        f" FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE {where}",
        (value,),
    ).fetchall()


def as_item(row: dict) -> dict:
    return {
        "delivery_id": row["delivery_id"],
        "message_id": row["message_id"],
        "endpoint_id": row["endpoint_id"],
        "number": row["number"],
        "started_at": row["started_at"],
        "duration_ms": row["duration_ms"],
        "status_code": row["status_code"],
        "error": row["error"],
        "response_excerpt": row["response_excerpt"],
    }


def parsed(items: list[dict]) -> list[dict]:
    return [{**i, "started_at": datetime.fromisoformat(i["started_at"])} for i in items]


def test_attempts_of_a_message_and_of_an_endpoint_newest_first_every_page(client, conn):
    data = dataset(client, conn)
    # One message to all three endpoints, tried on each: 200; 503 then 200; refused x3.
    sent = post(
        client,
        f"{data.app}/messages",
        {"event_type": "order.paid", "channels": ["eu"], "payload": {}},
    )
    by_endpoint = {d["endpoint_id"]: d["id"] for d in sent["deliveries"]}
    assert set(by_endpoint) == set(data.endpoints.values())
    now = datetime.now(UTC)
    claim_and_record(conn, by_endpoint[data.endpoints["all"]], "delivered", 200, now)
    claim_and_record(conn, by_endpoint[data.endpoints["paid"]], "pending", 503, now)
    claim_and_record(conn, by_endpoint[data.endpoints["paid"]], "delivered", 200, now)  # a tie
    for n in range(3):
        state = "failed" if n == 2 else "pending"
        claim_and_record(
            conn, by_endpoint[data.endpoints["eu"]], state, None, now + timedelta(seconds=n)
        )
    rows = attempt_rows(conn, "d.message_id = %s", sent["id"])
    expected = [
        as_item(r) for r in sorted(rows, key=lambda r: (r["started_at"], r["id"]), reverse=True)
    ]
    assert len(expected) == 6
    path = f"{data.app}/messages/{sent['id']}/attempts"
    for limit in (1, 4, 100):
        assert parsed(every_page(client, path, {}, limit)) == expected, limit
    only = every_page(client, path, {"endpoint_id": data.endpoints["eu"]}, 2)
    assert [i["number"] for i in only] == [3, 2, 1]
    assert {i["endpoint_id"] for i in only} == {data.endpoints["eu"]}
    assert (
        client.get(f"{data.app}/messages/{data.messages[0].id}", headers=ADMIN).json()["attempts"][
            0
        ]["message_id"]
        == data.messages[0].id
    )

    endpoint_id = data.endpoints["all"]
    rows = attempt_rows(conn, "d.endpoint_id = %s", endpoint_id)
    order = sorted(
        rows,
        key=lambda r: (r["delivery_created_at"], r["delivery_id"], r["number"]),
        reverse=True,
    )
    # The dataset's 16 deliveries to it: 6 delivered (one attempt), 6 failed (two), 4
    # untried; and this message's.
    assert len(order) == 6 + 6 * 2 + 1
    path = f"{data.app}/endpoints/{endpoint_id}/attempts"
    for limit in (1, 3, 1000):
        assert parsed(every_page(client, path, {}, limit)) == [as_item(r) for r in order], limit
    window = WINDOWS[3]
    expected = [as_item(r) for r in order if in_window(r["delivery_created_at"], window)]
    assert expected and len(expected) < len(order)
    assert parsed(every_page(client, path, window, 2)) == expected


def answered_as(code: int | None, wanted: str) -> bool:
    """What ``?status_code=wanted`` keeps, read plainly."""
    if wanted == "none":
        return code is None
    if wanted.endswith("xx"):
        return code is not None and code // 100 == int(wanted[0])
    return code == int(wanted)


def test_attempts_filtered_by_status_code_are_exactly_those_answered_so(client, conn):
    data = dataset(client, conn)
    sent = post(client, f"{data.app}/messages", {"event_type": "order.paid", "payload": {}})
    delivery = sent["deliveries"][0]["id"]  # to `all` or `paid`
    now = datetime.now(UTC)
    for n, code in enumerate((404, 503, None, 201)):
        state = "delivered" if code == 201 else "pending"
        claim_and_record(conn, delivery, state, code, now + timedelta(seconds=n))
    message_rows = sorted(
        attempt_rows(conn, "d.message_id = %s", sent["id"]),
        key=lambda r: (r["started_at"], r["id"]),
        reverse=True,
    )
    endpoint_id = data.endpoints["all"]
    endpoint_rows = sorted(
        attempt_rows(conn, "d.endpoint_id = %s", endpoint_id),
        key=lambda r: (r["delivery_created_at"], r["delivery_id"], r["number"]),
        reverse=True,
    )
    lists = {
        f"{data.app}/messages/{sent['id']}/attempts": message_rows,
        f"{data.app}/endpoints/{endpoint_id}/attempts": endpoint_rows,
    }
    for (path, rows), wanted in itertools.product(
        lists.items(), ["200", "201", "503", "404", "418", "2xx", "4xx", "5xx", "1xx", "none"]
    ):
        expected = [as_item(r) for r in rows if answered_as(r["status_code"], wanted)]
        for limit in (1, 1000):
            got = every_page(client, path, {"status_code": wanted}, limit)
            assert parsed(got) == expected, (path, wanted, limit)
    # The dataset gives `all` 200s, 503s and connection errors: each filter keeps some.
    assert {200, 503, None} <= {r["status_code"] for r in endpoint_rows}
    path = f"{data.app}/endpoints/{endpoint_id}/attempts"
    expected = [
        as_item(r)
        for r in endpoint_rows
        if r["status_code"] is None and in_window(r["delivery_created_at"], WINDOWS[3])
    ]
    got = every_page(client, path, {**WINDOWS[3], "status_code": "none"}, 2)
    assert expected and parsed(got) == expected
    for bad in ("600", "99", "1000", "20x", "6xx", "0xx", "2XX", "NONE", "", "5xx "):
        for path in lists:
            response = client.get(path, params={"status_code": bad}, headers=ADMIN)
            assert_invalid(response, "query.status_code")


def test_stats_count_what_a_brute_force_count_of_the_rows_says(client, conn):
    data = dataset(client, conn)
    endpoint_id = data.endpoints["all"]
    rows = conn.execute(
        "SELECT d.created_at, d.status, array_remove(array_agg(a.status_code), NULL) AS codes,"
        " count(a.id) AS attempts"
        " FROM webhook_deliveries d LEFT JOIN webhook_attempts a ON a.delivery_id = d.id"
        " WHERE d.endpoint_id = %s GROUP BY d.id",
        (endpoint_id,),
    ).fetchall()
    path = f"{data.app}/endpoints/{endpoint_id}/stats"
    for params in (
        {"since": iso(BASE + timedelta(minutes=30)), "until": iso(BASE + timedelta(hours=6))},
        {
            "since": iso(BASE - timedelta(days=2)),
            "until": iso(BASE + timedelta(days=1)),
            "period": "day",
        },
        {  # the first day cut at 03:00, in the middle of the data
            "since": iso(BASE + timedelta(hours=3)),
            "until": iso(BASE + timedelta(days=2, hours=5)),
            "period": "day",
        },
        {"since": iso(BASE + STEP * 3), "until": iso(BASE + STEP * 9), "period": "hour"},
    ):
        response = client.get(path, params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        stats = response.json()
        periods = [
            (datetime.fromisoformat(p["start"]), datetime.fromisoformat(p["end"]))
            for p in stats["data"]
        ]
        # The periods tile the window, in order, on UTC hour or day boundaries.
        assert periods[0][0] == datetime.fromisoformat(params["since"])
        assert periods[-1][1] == datetime.fromisoformat(params["until"])
        assert all(a[1] == b[0] for a, b in itertools.pairwise(periods))
        step = timedelta(days=1) if params.get("period") == "day" else timedelta(hours=1)
        assert all(
            (start.timestamp() % step.total_seconds() == 0 or i == 0) and end - start <= step
            for i, (start, end) in enumerate(periods)
        )
        for counted, (start, end) in zip(stats["data"], periods, strict=True):
            mine = [r for r in rows if start <= r["created_at"] < end]
            succeeded = sum(len([c for c in r["codes"] if 200 <= c < 300]) for r in mine)
            assert {k: counted[k] for k in counted if k not in ("start", "end")} == {
                "delivered": sum(r["status"] == "delivered" for r in mine),
                "failed": sum(r["status"] == "failed" for r in mine),
                "pending": sum(r["status"] == "pending" for r in mine),
                "attempts_succeeded": succeeded,
                "attempts_failed": sum(r["attempts"] for r in mine) - succeeded,
            }, (params, start)
        assert stats["total"]["delivered"] == sum(p["delivered"] for p in stats["data"])
    day = {"since": iso(BASE - timedelta(days=1)), "until": iso(BASE + timedelta(days=2))}
    total = client.get(path, params={**day, "period": "day"}, headers=ADMIN).json()["total"]
    assert total == {  # the 16 deliveries to it (see dataset)
        "delivered": 6,
        "failed": 6,
        "pending": 4,
        "attempts_succeeded": 6,
        "attempts_failed": 12,
    }
    recent = client.get(path, headers=ADMIN).json()  # the last 24 hours, until now: none of it
    assert len(recent["data"]) in (24, 25) and set(recent["total"].values()) == {0}
    until = datetime.fromisoformat(recent["until"])
    assert until - datetime.fromisoformat(recent["since"]) == timedelta(hours=24)
    assert abs(until - datetime.now(UTC)) < timedelta(minutes=1)
    boundary = {"since": iso(BASE), "until": iso(BASE + timedelta(hours=200))}
    assert client.get(path, params=boundary, headers=ADMIN).status_code == 200


def assert_invalid(response, field: str, code: str = "invalid_request") -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    if code == "invalid_request":
        assert field in {d["field"] for d in error["details"]}, error


def test_bad_input_is_a_422_naming_the_field(client, conn):
    data = dataset(client, conn)
    endpoint = f"{data.app}/endpoints/{data.endpoints['all']}"
    later, earlier = iso(BASE + timedelta(hours=1)), iso(BASE)
    for path in (f"{data.app}/messages", "/v1/messages", f"{endpoint}/messages"):
        get = lambda path=path, **params: client.get(path, params=params, headers=ADMIN)  # noqa: E731
        assert_invalid(get(since=later, until=earlier), "query.until")
        assert_invalid(get(since=earlier, until=earlier), "query.until")  # until is exclusive
        assert_invalid(get(since="yesterday"), "query.since")
        assert_invalid(get(until="2026-01-01T00:00:00"), "query.until")  # no offset
        assert_invalid(get(since="0001-01-01T00:00:00+01:00"), "query.since")
        assert_invalid(get(status="lost"), "query.status")
        assert_invalid(get(event_type="has space"), "query.event_type")
        assert_invalid(get(channel="a,b"), "query.channel")
    assert_invalid(
        client.get(
            f"{endpoint}/attempts", params={"since": later, "until": earlier}, headers=ADMIN
        ),
        "query.until",
    )
    stats = f"{endpoint}/stats"
    get = lambda **params: client.get(stats, params=params, headers=ADMIN)  # noqa: E731
    assert_invalid(get(period="week"), "query.period")
    assert_invalid(get(since=earlier, until=iso(BASE + timedelta(hours=201))), "query.since")
    assert_invalid(
        get(since=earlier, until=iso(BASE + timedelta(days=201)), period="day"), "query.since"
    )
    assert_invalid(get(since=later, until=earlier), "query.until")
    assert_invalid(get(since=iso(datetime.now(UTC) + timedelta(hours=1))), "query.since")


def test_an_iterator_from_another_list_or_forged_is_refused(client, conn):
    data = dataset(client, conn)
    endpoint = f"{data.app}/endpoints/{data.endpoints['all']}"
    message = data.messages[1].id  # failed at `all` after a 503: two attempts
    lists = {
        "messages": f"{data.app}/messages",
        "endpoints": f"{data.app}/endpoints",
        "endpoint messages": f"{endpoint}/messages",
        "endpoint attempts": f"{endpoint}/attempts",
        "message attempts": f"{data.app}/messages/{message}/attempts",
    }
    iterators = {}
    for name, path in lists.items():
        body = client.get(path, params={"limit": 1}, headers=ADMIN).json()
        assert not body["done"], name
        iterators[name] = body["iterator"]
    for (name, path), (other, iterator) in itertools.product(lists.items(), iterators.items()):
        response = client.get(path, params={"iterator": iterator}, headers=ADMIN)
        if name == other:
            assert response.status_code == 200, (name, response.text)
        else:
            assert_invalid(response, "query.iterator", "invalid_iterator")
    for path in lists.values():
        for forged in (
            "nope",
            "bWVzc2FnZXN8eHx5",
            "bWVzc2FnZS1hdHRlbXB0c3wyMDI2LTAxLTAxfDk5OTk5OTk5OTk5OTk5OTk5OTk5",
        ):
            response = client.get(path, params={"iterator": forged}, headers=ADMIN)
            assert_invalid(response, "query.iterator", "invalid_iterator")


def test_another_applications_ids_answer_404(client, conn):
    data = dataset(client, conn)
    other = "/v1/apps/" + post(client, "/v1/apps", {"name": "other"})["id"]
    endpoint_id, message_id = data.endpoints["all"], data.messages[0].id
    for path, code in (
        (f"{other}/messages/{message_id}/attempts", "message_not_found"),
        (f"{other}/endpoints/{endpoint_id}/attempts", "endpoint_not_found"),
        (f"{other}/endpoints/{endpoint_id}/stats", "endpoint_not_found"),
        (f"{other}/endpoints/{endpoint_id}/messages", "endpoint_not_found"),
        (f"/v1/messages/{message_id}/attempts", "message_not_found"),  # the default app's
    ):
        response = client.get(path, headers=ADMIN)
        assert response.status_code == 404 and response.json()["error"]["code"] == code, path
    # In the other application's list, the filters find none of this one's messages.
    listed = client.get(f"{other}/messages", params={"event_type": "order.paid"}, headers=ADMIN)
    assert listed.json()["data"] == []
