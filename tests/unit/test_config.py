"""Level 0: settings are typed, every problem is reported at once, secrets never shown."""

import logging
import subprocess
import sys

import pytest

from common.config import ConfigError, describe_settings, load_settings, read_settings
from common.connections.dependency import Dependencies
from common.support.logs import JsonFormatter
from common.support.masking import mask_url
from tests.support.servers import ROOT, jenga_env

VALID = {
    "DATABASE_URL": "postgresql://jenga:pg-pass-123@db.internal:5432/jenga",
    "REDIS_URL": "redis://:redis-pass-456@cache:6379/0",
}


def test_every_problem_is_named_in_one_error():
    with pytest.raises(ConfigError) as caught:
        read_settings(
            {"DATABASE_URL": "mysql://u:p@h/db", "PORT": "eighty", "JENGA_ADMIN_TOKEN": "short"}
        )
    problems = caught.value.problems
    assert (
        "DATABASE_URL: not a postgresql:// or postgres:// or postgresql+psycopg:// URL (got mysql://)"
        in problems
    )
    assert "REDIS_URL: missing (required)" in problems
    assert any(p.startswith("PORT:") for p in problems)
    assert any(p.startswith("JENGA_ADMIN_TOKEN: too short") for p in problems)
    assert len(problems) == 4


def test_invalid_secret_values_are_not_echoed():
    token = "tok-1234"
    with pytest.raises(ConfigError) as caught:
        read_settings({**VALID, "JENGA_ADMIN_TOKEN": token, "BROKER_URL": "kafka://u:brokerpw@h"})
    message = caught.value.message()
    assert token not in message and "brokerpw" not in message
    assert "BROKER_URL: not a" in message


def test_broker_defaults_to_redis_and_sqlalchemy_gets_the_psycopg_driver():
    settings = read_settings(VALID)
    assert settings.effective_broker_url == VALID["REDIS_URL"]
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg://jenga:")


def test_production_requires_flower_auth():
    with pytest.raises(ConfigError) as caught:
        read_settings({**VALID, "JENGA_ENV": "production"})
    assert any("FLOWER_BASIC_AUTH is required" in p for p in caught.value.problems)


@pytest.mark.parametrize(
    "password",
    ["change-me", "changeme", "admin", "password", "Change_Me-In-Production", "11-chars-ab"],
)
def test_production_refuses_a_placeholder_flower_password(password):
    """compose.yaml's development default (admin:change-me) must not reach production."""
    with pytest.raises(ConfigError) as caught:
        read_settings({**VALID, "JENGA_ENV": "production", "FLOWER_BASIC_AUTH": f"ops:{password}"})
    (problem,) = caught.value.problems
    assert problem.startswith("FLOWER_BASIC_AUTH has a placeholder or short password")
    assert "at least 12 characters" in problem and f":{password}" not in problem


def test_a_strong_flower_password_passes_in_production_and_any_in_development():
    strong = "ops:8f3a1c9e0b7d4e2a"
    settings = read_settings({**VALID, "JENGA_ENV": "production", "FLOWER_BASIC_AUTH": strong})
    assert settings.flower_basic_auth.get_secret_value() == strong
    assert read_settings({**VALID, "FLOWER_BASIC_AUTH": "admin:change-me"}).jenga_env == (
        "development"
    )


def test_described_settings_mask_every_secret():
    settings = read_settings(
        {
            **VALID,
            "JENGA_ADMIN_TOKEN": "a" * 32,
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/XYZ",
        }
    )
    text = repr(describe_settings(settings))
    for secret in ("pg-pass-123", "redis-pass-456", "a" * 32, "XYZ"):
        assert secret not in text
    assert (
        describe_settings(settings)["DATABASE_URL"]
        == "postgresql://jenga:***@db.internal:5432/jenga"
    )


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://pw@h:6379/0", "redis://***@h:6379/0"),
        ("amqp://guest:guest@h:5672//", "amqp://guest:***@h:5672//"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("https://hooks.slack.com/services/T1/B2/sekrit", "https://hooks.slack.com/***"),
        ("postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=verify-full&sslpassword=s%2Bx&passfile=/p&connect_timeout=5",
            "postgresql://u@h/db?sslmode=verify-full&sslpassword=***&passfile=/p&connect_timeout=5",
        ),
        ("redis://h:6379/0?password=secret&db=2", "redis://h:6379/0?password=***&db=2"),
        (
            "rediss://h/0?PASSWORD=s&ssl_cert_reqs=none",
            "rediss://h/0?PASSWORD=***&ssl_cert_reqs=none",
        ),
        (
            "https://x.example/a?api_key=k&access-token=t&sig=s&v=1",
            "https://x.example/a?api_key=***&access-token=***&sig=***&v=1",
        ),
        ("https://x.example/a?pass%77ord=s", "https://x.example/a?pass%77ord=***"),
        ("https://x.example/a?note=token&password=", "https://x.example/a?note=token&password="),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


QUERY_SECRETS = {
    "DATABASE_URL": "postgresql://jenga@db.internal/jenga?password=pg-query-secret"
    "&sslpassword=pg-ssl-secret&sslmode=require",
    "REDIS_URL": "redis://cache:6379/0?password=redis-query-secret",
    "BROKER_URL": "amqp://guest@mq:5672//?token=broker-query-secret",
}


def test_described_settings_mask_passwords_in_query_strings():
    """`jenga config check` prints DSNs whose password is a query parameter masked."""
    described = describe_settings(read_settings(QUERY_SECRETS))
    for secret in ("pg-query-secret", "pg-ssl-secret", "redis-query-secret", "broker-query-secret"):
        assert secret not in repr(described)
    assert described["DATABASE_URL"] == (
        "postgresql://jenga@db.internal/jenga?password=***&sslpassword=***&sslmode=require"
    )
    assert described["REDIS_URL"] == "redis://cache:6379/0?password=***"


def test_dependency_log_lines_mask_passwords_in_query_strings(caplog):
    """A `dependency.state` line names its target without the query-string password,
    and a driver error quoting the DSN is scrubbed too."""
    settings = load_settings(QUERY_SECRETS, wait_seconds=0)

    class RefusingEngine:
        def connect(self):
            raise ConnectionError(f"cannot reach {settings.database_url}")

    monitors = Dependencies.from_settings(settings, engine=RefusingEngine(), names=("postgres",))
    with caplog.at_level(logging.INFO, logger="jenga.dependency"):
        monitors["postgres"].step()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "dependency.state"]
    assert (
        record.target
        == "postgresql://jenga@db.internal/jenga?password=***&sslpassword=***&sslmode=require"
    )
    line = JsonFormatter().format(record)
    assert "pg-query-secret" not in line and "pg-ssl-secret" not in line
    assert record.state == "down" and "cannot reach" in record.error
    assert "pg-query-secret" not in record.error


def test_loading_retries_until_a_late_env_file_appears(tmp_path):
    """Secrets and env files can appear a moment after the container starts."""
    env_file = tmp_path / "jenga.env"
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += max(seconds, 0.05)
        if now[0] > 1.0 and not env_file.exists():
            env_file.write_text("DATABASE_URL=postgresql://u@h/db\nREDIS_URL=redis://h:6379/0\n")

    settings = load_settings(
        {"JENGA_ENV_FILE": str(env_file)}, wait_seconds=5, sleep=sleep, clock=lambda: now[0]
    )
    assert settings.redis_url == "redis://h:6379/0"
    assert sleeps and all(0 <= s <= 1.0 for s in sleeps)


def test_loading_gives_up_after_the_wait():
    now = [0.0]

    def sleep(seconds):
        now[0] += max(seconds, 0.01)

    with pytest.raises(ConfigError):
        load_settings({}, wait_seconds=3, sleep=sleep, clock=lambda: now[0])
    assert 3.0 <= now[0] < 4.1


def test_jenga_config_check_exit_codes_and_masking():
    good = subprocess.run(
        [sys.executable, "-m", "common.ops.cli", "config", "check"],
        cwd=ROOT,
        env=jenga_env(**VALID, JENGA_ADMIN_TOKEN="b" * 20),
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert (
        "DATABASE_URL" in good.stdout
        and "pg-pass-123" not in good.stdout
        and "b" * 20 not in good.stdout
    )
    bad = subprocess.run(
        [sys.executable, "-m", "common.ops.cli", "config", "check"],
        cwd=ROOT,
        env=jenga_env(DATABASE_URL="nope", CONFIG_WAIT_SECONDS="0"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "DATABASE_URL: not a" in bad.stderr and "REDIS_URL: missing (required)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_every_task_has_a_time_limit_that_leaves_room_for_a_delivery_attempt():
    from worker.celeryconfig import celery_config

    config = celery_config(read_settings({**VALID, "TASK_TIME_LIMIT_SECONDS": "120"}))
    assert config["task_time_limit"] == 120 and config["task_soft_time_limit"] == 108
    with pytest.raises(ConfigError) as caught:
        read_settings({**VALID, "DELIVERY_TIMEOUT_SECONDS": "90", "TASK_TIME_LIMIT_SECONDS": "120"})
    assert any("TASK_TIME_LIMIT_SECONDS must be at least twice" in p for p in caught.value.problems)
