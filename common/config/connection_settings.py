"""Level 1: where PostgreSQL, Redis and the broker are, and how often they are re-checked.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ConnectionSettings"]


class ConnectionSettings(BaseModel):
    """Connection settings."""

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
