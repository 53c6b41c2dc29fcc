"""The /v1 lists a page at a time (keyset: ``?limit=`` and ``?iterator=``):
every row exactly once, in order, whatever the page size; a forged iterator is
a 422. In-process against the real PostgreSQL and Redis."""

from __future__ import annotations

import pytest

from tests.support.api import ADMIN


def every_page(client, path: str, limit: int) -> list[list[str]]:
    pages, iterator = [], None
    while True:
        params = {"limit": limit, **({"iterator": iterator} if iterator else {})}
        body = client.get(path, params=params, headers=ADMIN).json()
        pages.append([row["id"] for row in body["data"]])
        if body["done"]:
            assert body["iterator"] is None
            return pages
        iterator = body["iterator"]


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_pages_hold_every_row_once_in_order(client, limit):
    app = client.post("/v1/apps", json={"name": "paged"}, headers=ADMIN).json()["id"]
    endpoints = [
        client.post(
            f"/v1/apps/{app}/endpoints", json={"url": "http://93.184.216.34/h"}, headers=ADMIN
        ).json()["id"]
        for _ in range(7)
    ]
    messages = [
        client.post(
            f"/v1/apps/{app}/messages",
            json={"endpoint_id": endpoints[0], "event_type": "a.b", "payload": {"n": n}},
            headers=ADMIN,
        ).json()["id"]
        for n in range(8)
    ]
    pages = every_page(client, f"/v1/apps/{app}/endpoints", limit)
    assert [i for p in pages for i in p] == endpoints  # oldest first
    assert all(len(p) <= limit for p in pages) and len(pages) == -(-7 // limit)
    pages = every_page(client, f"/v1/apps/{app}/messages", limit)
    assert [i for p in pages for i in p] == messages[::-1]  # newest first


def test_a_forged_iterator_is_refused(client):
    for forged in ("nope", "bm9w", "MjAyNi0xMy0wMXx4"):
        response = client.get("/v1/messages", params={"iterator": forged}, headers=ADMIN)
        assert response.status_code == 422, forged
        assert response.json()["error"]["code"] == "invalid_iterator"
