"""The processes: API and ops listeners, admin token, API rate limit, Flower, logs.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["ProcessSettings", "weak_flower_password"]

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


class ProcessSettings(BaseModel):
    """Process settings: listeners, API access, Flower, logs."""

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
    shutdown_grace_seconds: float = Field(
        default=20.0,
        ge=0,
        le=3600,
        description=(
            "On SIGTERM (a deploy) the worker, the API and beat stop taking work and finish what"
            " is in flight for up to this long; a delivery still running then is cut and handed"
            " to another worker at once. Keep it below the platform's kill (Heroku: 30 s,"
            " Kubernetes: `terminationGracePeriodSeconds`)."
        ),
    )
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
