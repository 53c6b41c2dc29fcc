"""The pure parts of webhook delivery: signatures (checked with the
``standardwebhooks`` package), the SSRF policy, the retry schedule and the
message lifecycle (a Hypothesis state machine against a small model)."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from common.config import ConfigError, load_settings
from common.delivery.destinations import DestinationError, refusal_for_address, resolve_destination
from common.delivery.retry_schedule import (
    MAX_RETRY_AFTER_SECONDS,
    Outcome,
    decide,
    jittered,
    parse_retry_after,
    parse_schedule,
)
from common.delivery.signing import checked_secret, generate_secret, webhook_headers

# --- signing -----------------------------------------------------------------


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(
    data=JSON,
    message_id=st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=40),
)
@settings(max_examples=50)
def test_standardwebhooks_verifies_our_signatures(data, message_id):
    body = json.dumps(
        {"type": "t", "data": data}, ensure_ascii=False
    ).encode()  # the package parses the body
    secret = generate_secret()
    timestamp = int(datetime.now(UTC).timestamp())
    headers = webhook_headers(secret, message_id, timestamp, body)
    Webhook(secret).verify(body, headers)  # raises if the signature is wrong


def test_a_changed_body_or_other_secret_fails_verification():
    secret = generate_secret()
    headers = webhook_headers(secret, "msg_1", int(datetime.now(UTC).timestamp()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(b'{"a":1}', headers)


def test_during_a_rotation_either_secret_verifies_and_a_third_does_not():
    new, old = generate_secret(), generate_secret()
    body = b'{"type":"t","data":{}}'
    headers = webhook_headers(new, "msg_1", int(datetime.now(UTC).timestamp()), body, old)
    assert headers["webhook-signature"].count("v1,") == 2
    Webhook(new).verify(body, headers)
    Webhook(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("sk_" + "A" * 32, "starts with"),
        ("whsec_not*base64!", "base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "holds 23"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "holds 65"),
    ],
)
def test_a_secret_the_sender_brings_must_be_whsec_base64_of_24_to_64_bytes(secret, why):
    with pytest.raises(ValueError, match=why):
        checked_secret(secret)
    for size in (24, 64):
        good = "whsec_" + base64.b64encode(b"k" * size).decode()
        assert checked_secret(good) == good


def test_secrets_are_whsec_and_distinct():
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50 and all(s.startswith("whsec_") for s in secrets)


# --- destinations (SSRF) -------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.100.100.200",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "100.64.0.1",
        "fec0::1",  # site-local (deprecated, still routed inside some networks)
        "2002:7f00:1::1",  # 6to4 embedding 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 embedding 169.254.169.254
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
        "168.63.129.16",  # Azure's WireServer
    ],
)
def test_non_public_addresses_are_refused(address):
    assert refusal_for_address(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::1"]
)
def test_public_addresses_are_allowed(address):
    assert refusal_for_address(ipaddress.ip_address(address)) is None


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    resolver = lambda host, port: ["93.184.216.34", "10.0.0.7"]  # noqa: E731
    with pytest.raises(DestinationError, match="private"):
        resolve_destination("https://hooks.example.com/x", allow_private=False, resolver=resolver)
    allowed = resolve_destination(
        "https://hooks.example.com/x", allow_private=True, resolver=resolver
    )
    assert allowed.port == 443 and len(allowed.addresses) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a.example/",
        "file:///etc/passwd",
        "http://",
        "http://a.example:99999/",
        "gopher://a.example",
    ],
)
def test_malformed_urls_are_refused(url):
    with pytest.raises(DestinationError):
        resolve_destination(url, allow_private=True, resolver=lambda h, p: ["93.184.216.34"])


def test_private_destinations_cannot_be_allowed_in_production():
    env = {
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "redis://h",
        "JENGA_ENV": "production",
        "FLOWER_BASIC_AUTH": "a:" + "b" * 24,
        "ALLOW_PRIVATE_DESTINATIONS": "true",
    }
    with pytest.raises(ConfigError, match="ALLOW_PRIVATE_DESTINATIONS"):
        load_settings(env, wait_seconds=0)


# --- schedule ------------------------------------------------------------------


def test_default_schedule_parses():
    assert parse_schedule("5s,5m,30m,2h,5h,10h,10h") == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert parse_schedule("200ms, 1.5s") == (0.2, 1.5)


@pytest.mark.parametrize("text", ["", "5", "5x", "1s,,abc", ",".join(["1s"] * 51)])
def test_bad_schedules_are_refused(text):
    with pytest.raises(ValueError):
        parse_schedule(text)


def test_bad_schedule_setting_is_a_config_error():
    with pytest.raises(ConfigError, match="DELIVERY_RETRY_SCHEDULE"):
        load_settings(
            {
                "DATABASE_URL": "postgresql://u@h/db",
                "REDIS_URL": "redis://h",
                "DELIVERY_RETRY_SCHEDULE": "soon",
            },
            wait_seconds=0,
        )


@given(delay=st.floats(0, 1e5), jitter=st.floats(0, 1), u=st.floats(0, 1))
def test_jitter_stays_within_its_fraction(delay, jitter, u):
    value = jittered(delay, jitter, rand=lambda low, high: low + (high - low) * u)
    assert delay <= value <= delay * (1 + jitter) + 1e-6


def test_retry_after_seconds_and_dates():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert (
        parse_retry_after((now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now)
        == 30
    )
    assert parse_retry_after("9999999", now) == 24 * 3600  # capped
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now) == 24 * 3600  # years: capped
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert parse_retry_after("inf", now) is None and parse_retry_after("-1", now) == 0


def test_decisions():
    delays = (5.0, 60.0)
    assert decide(Outcome(status_code=204), 0, delays).status == "delivered"
    assert decide(Outcome(status_code=500), 0, delays).retry_in == 5.0
    assert decide(Outcome(error="ConnectError"), 1, delays).retry_in == 60.0
    assert decide(Outcome(status_code=500), 2, delays).status == "failed"
    assert decide(Outcome(status_code=429, retry_after=900.0), 0, delays).retry_in == 900.0
    assert decide(Outcome(status_code=503, retry_after=900.0), 1, delays).retry_in == 900.0
    assert (
        decide(Outcome(status_code=500, retry_after=900.0), 0, delays).retry_in == 5.0
    )  # only 429/503
    gone = decide(Outcome(status_code=410), 0, delays)
    assert gone.status == "failed" and gone.disable_endpoint


@pytest.mark.parametrize(
    ("retry_after", "retry_in"),
    [
        (0.0, 60.0),  # "Retry-After: 0" does not replace the schedule's delay
        (-30.0, 60.0),
        (float("nan"), 60.0),
        (None, 60.0),
        (59.0, 60.0),
        (61.0, 61.0),  # a longer Retry-After wins
        (10 * 365 * 86400.0, MAX_RETRY_AFTER_SECONDS),  # ten years: capped
        (float("inf"), MAX_RETRY_AFTER_SECONDS),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_only_lengthens_the_schedule(status, retry_after, retry_in):
    outcome = Outcome(status_code=status, retry_after=retry_after)
    assert decide(outcome, 1, (5.0, 60.0)).retry_in == retry_in


@given(
    retry_after=st.none() | st.floats(allow_nan=True),
    status=st.sampled_from([429, 503]),
    jitter=st.floats(0, 1),
    u=st.floats(0, 1),
)
def test_next_delay_is_the_longer_of_schedule_and_capped_retry_after(
    retry_after, status, jitter, u
):
    def rand(low, high):
        return low + (high - low) * u

    delay = jittered(300.0, jitter, rand)
    decision = decide(
        Outcome(status_code=status, retry_after=retry_after), 1, (5.0, 300.0), jitter, rand
    )
    honoured = 0.0 if retry_after is None or not retry_after > 0 else retry_after
    assert decision.retry_in == max(delay, min(honoured, MAX_RETRY_AFTER_SECONDS))
    assert delay <= decision.retry_in <= max(delay, MAX_RETRY_AFTER_SECONDS)


# --- lifecycle: decide() driven like the worker drives it, against a model ------


class MessageLifecycle(RuleBasedStateMachine):
    """The worker applies decide() after each attempt; manual retries restart
    the schedule. Model: a message is delivered after its first 2xx, failed after
    410 or after len(delays)+1 failed attempts in a round, pending otherwise."""

    delays = (1.0, 2.0, 3.0)

    def __init__(self):
        super().__init__()
        self.status, self.position, self.attempts = "pending", 0, 0
        self.round_failures = 0
        self.model_status = "pending"

    @precondition(lambda self: self.status == "pending")
    @rule(
        code=st.sampled_from([200, 204, 400, 410, 429, 500, 503, None]),
        retry_after=st.none() | st.floats(0, 99),
    )
    def attempt(self, code, retry_after):
        outcome = Outcome(
            status_code=code, error=None if code else "ConnectError", retry_after=retry_after
        )
        decision = decide(outcome, self.position, self.delays)
        self.status = decision.status
        self.position += 1
        self.attempts += 1
        if decision.status == "pending":  # never sooner than the schedule says
            assert (
                decision.retry_in is not None
                and decision.retry_in >= self.delays[self.position - 1]
            )
        # the model
        if code is not None and 200 <= code < 300:
            self.model_status = "delivered"
        elif code == 410:
            self.model_status = "failed"
        else:
            self.round_failures += 1
            self.model_status = "failed" if self.round_failures > len(self.delays) else "pending"

    @rule()
    def manual_retry(self):
        self.status, self.position = "pending", 0
        self.model_status, self.round_failures = "pending", 0

    @invariant()
    def agrees_with_model(self):
        assert self.status == self.model_status

    @invariant()
    def never_more_attempts_in_a_round_than_the_schedule_allows(self):
        assert self.position <= len(self.delays) + 1


TestMessageLifecycle = MessageLifecycle.TestCase
TestMessageLifecycle.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
