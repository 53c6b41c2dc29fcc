"""Input the rest of the system could never store or send is refused (422, the
reason named) or put in the one spelling it can send, at the API: nothing is
accepted that would loop in the workers. In-process against the real
PostgreSQL and Redis test servers."""

from __future__ import annotations

import pytest

from tests.support.api import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def endpoint(client, url: str):
    return client.post("/v1/endpoints", json={"url": url}, headers=AUTH)


def send(client, endpoint_id: str, raw_payload: str):
    """The payload as raw JSON text: ``\\ud800`` must reach the server as the escape it is."""
    body = f'{{"endpoint_id":"{endpoint_id}","event_type":"a.b","payload":{raw_payload}}}'
    return client.post(
        "/v1/messages", content=body, headers={**AUTH, "content-type": "application/json"}
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"name":"\\ud800"}', "lone UTF-16 surrogate"),
        ('{"\\udfff":1}', "lone UTF-16 surrogate"),
        ('["a\\u0000b"]', "\\u0000"),
    ],
)
def test_payload_strings_postgresql_cannot_store_are_refused_with_the_reason(client, raw, reason):
    created = endpoint(client, "http://93.184.216.34/hook")
    assert created.status_code == 201, created.text
    response = send(client, created.json()["id"], raw)
    assert response.status_code == 422, response.text
    assert reason in response.json()["error"]["message"]


def test_a_payload_that_only_looks_like_an_escape_is_accepted(client):
    created = endpoint(client, "http://93.184.216.34/hook")
    response = send(client, created.json()["id"], '{"text":"\\\\u0000 and \\\\ud800"}')
    assert response.status_code == 202, response.text


def test_a_url_is_stored_as_it_will_be_sent(client):
    created = endpoint(client, "HTTP://93.184.216.34/päth/with space?q=ä#fragment")
    assert created.status_code == 201, created.text
    assert created.json()["url"] == "http://93.184.216.34/p%C3%A4th/with%20space?q=%C3%A4"


def test_a_host_dns_cannot_hold_is_refused_with_the_reason(client):
    response = endpoint(client, "https://" + "a" * 64 + ".example/")
    assert response.status_code == 422
    assert "not a valid domain name" in response.json()["error"]["message"]
