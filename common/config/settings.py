"""Level 0: every setting, typed and validated (pydantic-settings).

Fields are grouped by the level that uses them; the README's settings table
is generated from their descriptions (:mod:`common.config.docs`).
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from common.support.durations import parse_schedule
from common.support.masking import mask_url, url_secrets

__all__ = ["Settings", "describe_settings"]

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")


# compose.yaml's development default is admin:change-me: it, and passwords like it
# (admin, password, change-me-in-production), must never guard a production Flower.
FLOWER_PASSWORD_MIN_LENGTH = 12
FLOWER_PLACEHOLDER_WORDS = ("changeme", "password", "placeholder")


def weak_flower_password(password: str) -> bool:
    """A Flower password that is too short or a placeholder (``change-me``...)."""
    plain = re.sub(r"[\W_]", "", password.lower())
    return len(password) < FLOWER_PASSWORD_MIN_LENGTH or any(
        word in plain for word in FLOWER_PLACEHOLDER_WORDS
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


class Settings(BaseSettings):
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

    # --- connections ---------------------------------------------------------
    database_url: str = Field(
        description="PostgreSQL URL, `postgresql://user:password@host:5432/db`. Required."
    )
    redis_url: str = Field(
        description=(
            "Redis URL for alarms, breakers, limits and heartbeats, `redis://host:6379/0`."
            " Required."
        )
    )
    broker_url: str | None = Field(
        default=None,
        description=(
            "Celery broker: `redis://...` or `amqp://...` (RabbitMQ). Defaults to `REDIS_URL`."
        ),
    )
    jenga_namespace: str = Field(
        default="jenga",
        description=(
            "Prefix of every Redis key and queue name, so several deployments can share one Redis."
        ),
    )
    reconnect_base_seconds: float = Field(
        default=0.5, gt=0, description="First reconnect delay ceiling (full-jitter backoff base)."
    )
    reconnect_cap_seconds: float = Field(
        default=5.0, gt=0, description="Largest delay between reconnect attempts."
    )
    check_timeout_seconds: float = Field(
        default=1.0, gt=0, le=30, description="Timeout of one dependency check (connect + ping)."
    )
    check_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often a connected dependency is re-checked, to notice a lost server.",
    )

    # --- processes -------------------------------------------------------------
    port: int = Field(
        default=8000, ge=1, le=65535, description="Port of the HTTP API (`web` process)."
    )
    ops_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "When set, the `web` process also serves the operator routes (`/health`, `/status`,"
            " `/metrics`, `/alarms`, `GET /breakers`) on this port without a key, for Prometheus"
            " and dashboards; bind it to a private interface (`OPS_HOST`). Unset: those routes"
            " need an `admin` key."
        ),
    )
    ops_host: str = Field(default="127.0.0.1", description="Interface of the `OPS_PORT` listener.")
    jenga_env: Literal["development", "production"] = Field(
        default="development",
        description=(
            "`production` refuses unsafe settings (Flower without auth or with a placeholder"
            " password, private webhook destinations)."
        ),
    )
    jenga_admin_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token for write and admin API calls (at least 16 characters)."
            " Unset: those calls are refused with 401/403."
        ),
    )
    api_rate_limit_per_second: int = Field(
        default=50,
        ge=0,
        le=100_000,
        description=(
            "Requests a second each API key (and the admin token) may make, across every API"
            " process (a token bucket in Redis); over it: 429 with `Retry-After`. 0 = no limit."
        ),
    )
    api_rate_limit_burst: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description=(
            "Requests a key may make at once after being idle: the size of its bucket,"
            " refilled at `API_RATE_LIMIT_PER_SECOND`."
        ),
    )
    flower_port: int = Field(
        default=5555, ge=1, le=65535, description="Port of the Flower dashboard."
    )
    flower_basic_auth: SecretStr | None = Field(
        default=None,
        description=(
            "`user:password` for Flower's basic auth. Required when `JENGA_ENV=production`,"
            f" with a password of at least {FLOWER_PASSWORD_MIN_LENGTH} characters that is not"
            " a placeholder (`change-me`)."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json` for one JSON object per log line, `text` for people."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level logged."
    )

    # --- health and watchdogs -------------------------------------------------
    heartbeat_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a worker writes its heartbeat (file and Redis key).",
    )
    heartbeat_dir: str = Field(
        default="/tmp/jenga-heartbeat",
        description="Folder of the worker heartbeat files read by `jenga worker health`.",
    )
    watchdog_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often beat runs each watchdog."
    )
    alarm_clear_after: int = Field(
        default=3, ge=1, description="Consecutive passing checks before an open alarm clears."
    )
    alarm_history_max: int = Field(
        default=1000,
        ge=10,
        description="About how many alarm set/clear events Redis keeps (`XADD MAXLEN ~`).",
    )
    alarm_notify_min_severity: Literal["critical", "warning", "info"] = Field(
        default="critical",
        description=(
            "Alarms of this severity or higher are sent to Slack and the alarm webhook; lower"
            " ones are logged, kept in Redis and shown on /status and /alarms."
        ),
    )
    critical_services: str = Field(
        default="",
        description=(
            "Comma-separated breaker names or patterns (`webhook:*.payments.example`) whose"
            " opening is a critical alarm. A receiver's breaker (`webhook:<host>`, a customer's"
            " endpoint) is otherwise a warning; every other breaker is critical."
        ),
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming-webhook URL for alarm notifications."
    )
    alarm_webhook_url: SecretStr | None = Field(
        default=None, description="Generic JSON webhook that receives every alarm set/clear."
    )
    metrics_max_services: int = Field(
        default=50,
        ge=1,
        le=1000,
        description=(
            "Receivers (`webhook:<host>`) with their own label in /metrics and their own chart"
            " on /status: the busiest ones; the others are summed up as `other`. Services that"
            " are not receivers always keep their own."
        ),
    )

    # --- circuit breakers (level 4) -------------------------------------------
    breaker_failure_threshold: int = Field(
        default=5,
        ge=0,
        description="Consecutive failed calls that open a service's breaker (0 = rule off).",
    )
    breaker_failure_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of failed calls in the window that opens the breaker (0 = rule off).",
    )
    breaker_min_calls: int = Field(
        default=10,
        ge=1,
        description="Calls the window must hold before the failure and slow-call rates are judged.",
    )
    breaker_window_seconds: float = Field(
        default=30.0, gt=0, description="Length of the breaker's sliding window."
    )
    breaker_slow_call_seconds: float = Field(
        default=10.0, gt=0, description="A call slower than this counts as slow."
    )
    breaker_slow_call_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of slow calls in the window that opens the breaker (0 = rule off).",
    )
    breaker_open_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How long a breaker stays open after its first trip; doubles with each further trip."
        ),
    )
    breaker_open_max_seconds: float = Field(
        default=300.0,
        gt=0,
        le=1800,
        description=(
            "Longest open time, however often the breaker trips"
            " (kept well below the broker's 3600 s visibility timeout)."
        ),
    )
    breaker_half_open_calls: int = Field(
        default=1,
        ge=1,
        description=(
            "Trial calls admitted fleet-wide when the open time is over; all must succeed to close."
        ),
    )
    breaker_probe_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A trial call that never reports (its worker died) frees its slot after this.",
    )
    guard_max_deferrals: int = Field(
        default=50,
        ge=0,
        description=(
            "Times a guarded task is deferred (breaker open, no limiter slot) before it fails with"
            " `ServiceUnavailableError`."
        ),
    )
    guard_max_countdown_seconds: float = Field(
        default=600.0,
        gt=0,
        le=1800,
        description=(
            "Longest deferral of a guarded task (kept well below the broker's 3600 s visibility"
            " timeout)."
        ),
    )
    guard_idle_evict_seconds: float = Field(
        default=600.0,
        ge=1,
        description=(
            "A service's breaker and limit not used for this long are dropped from a process's"
            " memory (their state stays in Redis and is read again on the next call)."
        ),
    )

    # --- adaptive concurrency limit (AIMD), one per external service ----------
    limit_initial: int = Field(
        default=20,
        ge=1,
        description=(
            "Concurrency limit of a service with no history yet (fleet-wide calls in flight)."
        ),
    )
    limit_min: int = Field(
        default=1,
        ge=1,
        description=(
            "Lowest the limit goes; also each process's own limit while Redis is unreachable."
        ),
    )
    limit_max: int = Field(default=200, ge=1, description="Highest the limit goes.")
    limit_backoff_ratio: float = Field(
        default=0.9,
        gt=0,
        lt=1,
        description=(
            "On a drop (error, timeout, 429/503, slow window) the limit is multiplied by this."
        ),
    )
    limit_step: int = Field(
        default=1,
        ge=1,
        description="Slots added after a window that used at least half the limit without a drop.",
    )
    limit_latency_target_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A window whose average call latency is above this counts as a drop.",
    )
    limit_window_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How long samples are collected before the limit is updated once.",
    )
    limit_lease_ttl_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A slot not renewed for this long (its worker died) returns to the fleet.",
    )

    # --- webhook delivery (level 5) --------------------------------------------
    max_payload_bytes: int = Field(
        default=262144,
        ge=1024,
        description=(
            "Largest accepted message `payload` (serialized JSON, bytes); larger ones get 413."
        ),
    )
    allow_private_destinations: bool = Field(
        default=False,
        description=(
            "Let webhooks go to loopback/private/link-local addresses (local development, tests)."
            " Refused when `JENGA_ENV=production`."
        ),
    )
    delivery_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect timeout of one webhook delivery attempt."
    )
    delivery_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Total time one delivery attempt may take; a later answer counts as a timeout.",
    )
    delivery_retry_schedule: str = Field(
        default="5s,5m,30m,2h,5h,10h,10h",
        description=(
            "Delays between delivery attempts (ms/s/m/h/d); after the last one the message is"
            " `failed`."
        ),
    )
    delivery_retry_jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description=(
            "Each retry delay grows by a random fraction up to this, so retries spread out."
        ),
    )
    delivery_dispatch_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often beat enqueues the messages that are due."
    )
    delivery_redispatch_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A due message whose task has not started this long after enqueueing"
            " (broker or worker lost) is enqueued again."
        ),
    )
    delivery_dispatch_batch: int = Field(
        default=500, ge=1, description="Most messages one dispatch run enqueues."
    )
    delivery_max_unrecorded_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "A message claimed this many times without an attempt being recorded (the worker"
            " died during it, or PostgreSQL refused the record) is `failed` with the reason,"
            " not sent again."
        ),
    )
    task_time_limit_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Backstop for every task: past 90% of this the task is interrupted (soft limit),"
            " past it the pool process is replaced (hard limit, prefork pool only)."
            " A delivery attempt itself ends within `DELIVERY_TIMEOUT_SECONDS`."
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return _check_url(value, POSTGRES_SCHEMES, "PostgreSQL")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return _check_url(value, REDIS_SCHEMES, "Redis")

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
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
        if self.reconnect_cap_seconds < self.reconnect_base_seconds:
            raise ValueError("RECONNECT_CAP_SECONDS must be >= RECONNECT_BASE_SECONDS")
        if not self.limit_min <= self.limit_initial <= self.limit_max:
            raise ValueError("LIMIT_INITIAL must be between LIMIT_MIN and LIMIT_MAX")
        if self.breaker_open_max_seconds < self.breaker_open_seconds:
            raise ValueError("BREAKER_OPEN_MAX_SECONDS must be >= BREAKER_OPEN_SECONDS")
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
