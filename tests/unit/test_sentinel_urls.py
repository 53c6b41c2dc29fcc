"""Sentinel URLs: parsed into the Sentinels, master name and database; a malformed
one is a config error before anything connects, never quoting the password; the
broker form is kombu's sentinel transport."""

from __future__ import annotations

import pytest

from common.broker import is_redis_broker, kombu_broker, publisher
from common.config import ConfigError, describe_settings, read_settings
from common.redis.urls import SentinelURL, parse_sentinel_url

DATABASE_URL = "postgresql://jenga:pg-pass-123@db.internal:5432/jenga"
SENTINEL_URL = "redis+sentinel://:red%40is-pw@s1:26379,s2:26380,[::1]/mymaster/2"


def test_a_sentinel_url_names_the_sentinels_master_and_database():
    assert parse_sentinel_url(SENTINEL_URL) == SentinelURL(
        sentinels=(("s1", 26379), ("s2", 26380), ("::1", 26379)),
        master_name="mymaster",
        db=2,
        password="red@is-pw",
    )


def test_database_user_and_sentinel_password_are_optional():
    parsed = parse_sentinel_url("redis+sentinel://app:pw@s1/cache?sentinel_password=spw")
    assert (parsed.db, parsed.username, parsed.password) == (0, "app", "pw")
    assert parsed.sentinel_password == "spw"
    assert parse_sentinel_url("redis+sentinel://s1/cache").password is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://s1:26379", "no master name"),
        ("redis+sentinel:///mymaster", "names no Sentinel"),
        ("redis+sentinel://s1:26379,s2:port/mymaster", "Sentinel address 2 has no valid port"),
        ("redis+sentinel://s1:0/mymaster", "Sentinel address 1 has no valid port"),
        ("redis+sentinel://s1,,s3/mymaster", "Sentinel address 2 is not host or host:port"),
        ("redis+sentinel://s1/mymaster/zero", "database (after the master name) must be a number"),
        ("redis+sentinel://s1/mymaster/0/extra", "path must be /MASTER_NAME or /MASTER_NAME/DB"),
        ("redis+sentinel://s1/my%20master", "master name must be"),
        ("redis+sentinel://s1/mymaster?master=x", "unknown option"),
    ],
)
def test_a_malformed_sentinel_url_is_one_clear_config_problem(url, problem):
    for name in ("REDIS_URL", "BROKER_URL"):
        env = {"DATABASE_URL": DATABASE_URL, "REDIS_URL": "redis://cache:6379/0", name: url}
        with pytest.raises(ConfigError) as caught:
            read_settings(env)
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(f"{name}: ")
        assert problem in caught.value.problems[0]


def test_the_password_is_never_quoted_even_when_it_breaks_the_url():
    # An unencoded '/' or '?' puts part of the password where the hosts or options are.
    for url in (
        "redis+sentinel://:hunter/22pw@s1/mymaster",
        "redis+sentinel://:hun?ter22pw@s1/mymaster",
    ):
        with pytest.raises(ConfigError) as caught:
            read_settings({"DATABASE_URL": DATABASE_URL, "REDIS_URL": url})
        message = caught.value.message()
        assert "hun" not in message and "22pw" not in message, message


def test_config_check_masks_both_passwords():
    url = SENTINEL_URL + "?sentinel_password=sentinel-pw"
    settings = read_settings({"DATABASE_URL": DATABASE_URL, "REDIS_URL": url})
    described = describe_settings(settings)
    assert described["REDIS_URL"] == (
        "redis+sentinel://:***@s1:26379,s2:26380,[::1]/mymaster/2?sentinel_password=***"
    )
    assert described["BROKER_URL"] == described["REDIS_URL"]
    secrets = settings.secret_values()
    assert "red@is-pw" in secrets and "sentinel-pw" in secrets


def test_the_broker_becomes_a_sentinel_transport():
    url, transport, options = kombu_broker(SENTINEL_URL + "?sentinel_password=spw", timeout=1.5)
    # One URL (password, database), not kombu's ';' alternates: a switch to the next
    # alternate would also switch to the transport its scheme names.
    assert url == "sentinel://:red%40is-pw@s1:26379/2"
    assert transport == "common.redis.kombu_sentinel:FollowingSentinelTransport"
    assert options["master_name"] == "mymaster"
    assert options["sentinels"] == [["s1", 26379], ["s2", 26380], ["::1", 26379]]
    sentinel_kwargs = options["sentinel_kwargs"]
    assert sentinel_kwargs["socket_timeout"] == sentinel_kwargs["socket_connect_timeout"] == 1.5
    assert sentinel_kwargs["password"] == "spw"
    assert sentinel_kwargs["retry"].get_retries() == 0  # a dead Sentinel costs one timeout
    assert kombu_broker("amqp://guest:guest@rabbit//", 1.0) == (
        "amqp://guest:guest@rabbit//",
        None,
        {},
    )
    assert is_redis_broker(SENTINEL_URL) and not is_redis_broker("amqp://rabbit//")


def test_worker_and_publisher_use_the_sentinel_transport_with_the_namespace_prefix():
    from worker.celeryconfig import celery_config

    settings = read_settings(
        {"DATABASE_URL": DATABASE_URL, "REDIS_URL": SENTINEL_URL, "JENGA_NAMESPACE": "ns1"}
    )
    for conf in (celery_config(settings), publisher(settings).conf):
        assert conf["broker_url"] == "sentinel://:red%40is-pw@s1:26379/2"
        assert conf["broker_transport"].endswith(":FollowingSentinelTransport")
        options = conf["broker_transport_options"]
        assert options["master_name"] == "mymaster"
        assert options["global_keyprefix"] == "ns1:broker:"
        assert options["visibility_timeout"] == 3600
