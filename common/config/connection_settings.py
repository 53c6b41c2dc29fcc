"""Level 1: where PostgreSQL, Redis and the broker are, and how often they are re-checked.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there. :func:`check_sentinel_url` is the rule for a
``redis+sentinel://`` ``REDIS_URL`` or ``BROKER_URL``, :func:`check_cluster_url` for a
``redis+cluster://`` ``REDIS_URL`` (shared state only), applied before anything connects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from common.redis.urls import parse_cluster_url, parse_sentinel_url

__all__ = ["ConnectionSettings", "check_cluster_url", "check_sentinel_url"]


def check_sentinel_url(value: str) -> str:
    """``value`` if it is a well-formed ``redis+sentinel://`` URL, else ``ValueError``
    saying what is wrong (never quoting the URL: it may hold a password)."""
    value = value.strip()
    parse_sentinel_url(value)
    return value


def check_cluster_url(value: str) -> str:
    """``value`` if it is a well-formed ``redis+cluster://`` URL, else ``ValueError``
    saying what is wrong (never quoting the URL: it may hold a password)."""
    value = value.strip()
    parse_cluster_url(value)
    return value


class ConnectionSettings(BaseModel):
    """Connection settings."""

    database_url: str = Field(
        description="PostgreSQL URL, `postgresql://user:password@host:5432/db`. Required."
    )
    redis_url: str = Field(
        description=(
            "Redis URL for alarms, breakers, limits and heartbeats, `redis://host:6379/0`,"
            " or a Sentinel group, `redis+sentinel://[:password@]host:26379[,host:26379...]"
            "/MASTER_NAME[/DB]` (`?sentinel_password=` when the Sentinels want one), or a"
            " Redis Cluster, `redis+cluster://[:password@]host:port[,host:port...]` (then"
            " set `BROKER_URL` too: Celery cannot use a cluster). Required."
        )
    )
    broker_url: str | None = Field(
        default=None,
        description=(
            "Celery broker: `redis://...`, `redis+sentinel://...` (as `REDIS_URL`; kombu's"
            " sentinel transport) or `amqp://...` (RabbitMQ); never `redis+cluster://` (Celery"
            " has no Redis Cluster transport). Defaults to `REDIS_URL`."
        ),
    )
    broker_confirm_publish: bool = Field(
        default=True,
        description=(
            "On RabbitMQ, the API waits for the broker to confirm each delivery task it"
            " publishes (publisher confirms, at most `CHECK_TIMEOUT_SECONDS`): a task the"
            " broker did not take is left to the dispatcher's next run instead of"
            " `DELIVERY_REDISPATCH_SECONDS`. Costs a broker round trip per message (0.6 to"
            " 2.6 ms more per publish here, BENCHMARKS.md); `false` trades that for the"
            " later redispatch."
            " Redis brokers answer every command anyway."
        ),
    )
    broker_queue_type: Literal["classic", "quorum"] = Field(
        default="classic",
        description=(
            "Type of the queues Jenga declares on RabbitMQ: `quorum` (replicated, the"
            " type RabbitMQ recommends for durable work; delays use RabbitMQ's native delayed"
            " delivery, in whole seconds) or `classic`. A queue's type cannot change once it"
            " exists: switching an existing deployment means deleting its queues (README,"
            " operations guide). `quorum` needs a RabbitMQ `BROKER_URL`."
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
