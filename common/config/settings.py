"""Level 0: every setting, typed and validated (pydantic-settings).

Fields are grouped by the level that uses them, one group per module
(``connection_settings`` ... ``delivery_settings``); this class joins them and
holds the validators. The README's settings table is generated from their
descriptions (:mod:`common.config.docs`), in the order of the groups.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.config.breaker_settings import BreakerSettings
from common.config.connection_settings import (
    ConnectionSettings,
    check_cluster_url,
    check_sentinel_url,
)
from common.config.delivery_settings import DeliverySettings
from common.config.health_settings import HealthSettings
from common.config.limit_settings import LimitSettings
from common.config.process_settings import (
    FLOWER_PASSWORD_MIN_LENGTH,
    ProcessSettings,
    weak_flower_password,
)
from common.redis.urls import is_cluster_url, is_sentinel_url
from common.support.durations import parse_schedule
from common.support.masking import mask_url, url_secrets

__all__ = ["Settings", "describe_settings"]

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
BROKER_SCHEMES = ("redis", "rediss", "redis+sentinel", *AMQP_SCHEMES)
CLUSTER_BROKER_REFUSED = (
    "is a Redis Cluster (redis+cluster://), which Celery's Redis transport does not support:"
    " set BROKER_URL to RabbitMQ (amqp://...), or to a redis:// or redis+sentinel:// server"
)


def _check_url(value: str, schemes: tuple[str, ...], kind: str) -> str:
    value = value.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"not a valid {kind} URL") from None
    if parts.scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        got = f" (got {parts.scheme}://)" if parts.scheme else ""
        raise ValueError(f"not a {wanted} URL{got}")
    if parts.scheme != "unix" and not parts.hostname and kind != "PostgreSQL":
        raise ValueError(f"{kind} URL has no host")
    return value


# pydantic collects fields from the bases last to first: listed in reverse, the groups keep
# the README table's order (connections first, delivery last).
class Settings(
    DeliverySettings,
    LimitSettings,
    BreakerSettings,
    HealthSettings,
    ProcessSettings,
    ConnectionSettings,
    BaseSettings,
):
    """All of Jenga's settings. The README's settings table is generated from
    these fields (``jenga config docs``); a test keeps the two in step."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment arrives as init values from :func:`common.config.loading.read_settings`
        # (the mapping it was given), then the env file, then the secrets folder.
        return init_settings, dotenv_settings, file_secret_settings

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _check_url(value, POSTGRES_SCHEMES, "PostgreSQL")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if is_sentinel_url(value):
            return check_sentinel_url(value)
        if is_cluster_url(value):
            return check_cluster_url(value)
        return _check_url(value, REDIS_SCHEMES, "Redis")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if is_sentinel_url(value):
            return check_sentinel_url(value)
        if is_cluster_url(value):
            raise ValueError(CLUSTER_BROKER_REFUSED)
        return _check_url(value, BROKER_SCHEMES, "broker")

    @field_validator("jenga_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,40}", value):
            raise ValueError("use 1-41 characters of a-z, 0-9, '_', '.', '-'")
        return value

    @field_validator("jenga_admin_token")
    @classmethod
    def _admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # an empty variable (as compose passes it) means "not set"
        if len(value.get_secret_value()) < 16:
            raise ValueError("too short: use at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("slack_webhook_url", "alarm_webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        _check_url(value.get_secret_value(), ("http", "https"), "webhook")
        return value

    @field_validator("delivery_retry_schedule")
    @classmethod
    def _retry_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        user, _, password = value.get_secret_value().partition(":")
        if not user or not password:
            raise ValueError("expected `user:password`")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.broker_url is None and is_cluster_url(self.redis_url):
            raise ValueError(f"BROKER_URL is unset and REDIS_URL {CLUSTER_BROKER_REFUSED}")
        if (
            self.broker_queue_type == "quorum"
            and urlsplit(self.effective_broker_url).scheme not in AMQP_SCHEMES
        ):
            raise ValueError(
                "BROKER_QUEUE_TYPE=quorum needs a RabbitMQ BROKER_URL (amqp://...):"
                " Redis brokers have no queue types"
            )
        if self.reconnect_cap_seconds < self.reconnect_base_seconds:
            raise ValueError("RECONNECT_CAP_SECONDS must be >= RECONNECT_BASE_SECONDS")
        if not self.limit_min <= self.limit_initial <= self.limit_max:
            raise ValueError("LIMIT_INITIAL must be between LIMIT_MIN and LIMIT_MAX")
        if self.breaker_open_max_seconds < self.breaker_open_seconds:
            raise ValueError("BREAKER_OPEN_MAX_SECONDS must be >= BREAKER_OPEN_SECONDS")
        if self.beat_lock_renew_seconds >= self.beat_lock_ttl_seconds:
            raise ValueError("BEAT_LOCK_RENEW_SECONDS must be less than BEAT_LOCK_TTL_SECONDS")
        if self.task_time_limit_seconds < 2 * self.delivery_timeout_seconds:
            raise ValueError(
                "TASK_TIME_LIMIT_SECONDS must be at least twice DELIVERY_TIMEOUT_SECONDS"
            )
        if self.jenga_env == "production" and self.flower_basic_auth is None:
            raise ValueError("FLOWER_BASIC_AUTH is required when JENGA_ENV=production")
        if self.jenga_env == "production" and self.flower_basic_auth is not None:
            password = self.flower_basic_auth.get_secret_value().partition(":")[2]
            if weak_flower_password(password):
                # The value is not echoed: it may be a real, if weak, password.
                raise ValueError(
                    "FLOWER_BASIC_AUTH has a placeholder or short password, refused when"
                    f" JENGA_ENV=production: use at least {FLOWER_PASSWORD_MIN_LENGTH} characters"
                    " that are not a placeholder, e.g. `admin:$(openssl rand -hex 16)`"
                )
        if self.jenga_env == "production" and self.allow_private_destinations:
            raise ValueError(
                "ALLOW_PRIVATE_DESTINATIONS must be false when JENGA_ENV=production"
                " (SSRF protection)"
            )
        return self

    # --- derived values --------------------------------------------------------
    @property
    def delivery_retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.delivery_retry_schedule)

    @property
    def critical_service_patterns(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.critical_services.split(",") if p.strip())

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def sqlalchemy_url(self) -> str:
        """``DATABASE_URL`` with the psycopg 3 driver named, as SQLAlchemy wants it."""
        scheme, rest = self.database_url.split("://", 1)
        return f"postgresql+psycopg://{rest}" if scheme in POSTGRES_SCHEMES else self.database_url

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for the log scrubber."""
        values = []
        for url in (self.database_url, self.redis_url, self.effective_broker_url):
            values += url_secrets(url)
        for secret in (
            self.jenga_admin_token,
            self.slack_webhook_url,
            self.alarm_webhook_url,
            self.flower_basic_auth,
        ):
            if secret is not None:
                values.append(secret.get_secret_value())
        if self.flower_basic_auth is not None:
            values.append(self.flower_basic_auth.get_secret_value().partition(":")[2])
        return values


URL_SETTINGS = ("database_url", "redis_url", "broker_url")


def describe_settings(settings: Settings) -> dict[str, str]:
    """Effective settings by environment name, secrets masked, for `jenga config check`."""
    described: dict[str, str] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if name == "broker_url" and value is None:
            value = settings.effective_broker_url
        if isinstance(value, SecretStr):
            value = "***"
        elif name in URL_SETTINGS and value is not None:
            value = mask_url(value)
        described[name.upper()] = "" if value is None else str(value)
    return described
