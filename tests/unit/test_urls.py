"""``common.delivery.urls``: a webhook URL in the one spelling HTTP can send,
or refused with the reason; and the service name of its host never overflows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.delivery.destinations import DestinationError, resolve_destination
from common.delivery.urls import normalise_url
from common.guards.names import is_service_name, webhook_service


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        (
            "https://Bücher.Example/päth?q=ä b#frag",
            "https://xn--bcher-kva.example/p%C3%A4th?q=%C3%A4%20b",
        ),
        ("HTTP://Hooks.Example.com/a%20b", "http://hooks.example.com/a%20b"),
        ("http://[2606:4700::1111]:8080/x", "http://[2606:4700::1111]:8080/x"),
        ("https://hooks.example.com/ok?a=1&b=%2F", "https://hooks.example.com/ok?a=1&b=%2F"),
        ("  https://hooks.example.com/  ", "https://hooks.example.com/"),
    ],
)
def test_urls_are_spelled_as_they_are_sent(url, normalised):
    assert normalise_url(url) == normalised
    assert normalise_url(normalised) == normalised  # once is enough


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://" + "a" * 64 + ".example/", "not a valid domain name"),
        ("https://" + ("a" * 60 + ".") * 5 + "example/", "not a valid domain name"),
        ("https://a..example/", "not a valid domain name"),
        ("https://exa\u200bmple\u0000.com/", "not a valid domain name"),
        ("https:///no-host", "no host"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("http://[::1/", "not a valid URL"),
    ],
)
def test_urls_that_cannot_be_sent_are_refused_with_the_reason(url, reason):
    with pytest.raises(DestinationError, match=reason):
        normalise_url(url)


def test_the_longest_host_dns_allows_gets_a_breaker_and_is_resolved():
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    url = normalise_url(f"https://{host}/hook")
    destination = resolve_destination(url, allow_private=False, resolver=lambda h, p: ["8.8.8.8"])
    assert destination.host == host and is_service_name(webhook_service(destination.host))


@given(st.text(min_size=1, max_size=80))
def test_any_text_is_either_refused_or_an_ascii_url(text):
    try:
        url = normalise_url(f"https://{text}/p/{text}?q={text}")
    except DestinationError:
        return
    assert url.isascii() and " " not in url
    host = resolve_destination(url, allow_private=True, resolver=lambda h, p: ["8.8.8.8"]).host
    assert is_service_name(webhook_service(host))
