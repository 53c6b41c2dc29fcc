"""Levels 2-3: heartbeats, watchdogs, alarms and where they are sent.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["HealthSettings"]


class HealthSettings(BaseModel):
    """Health, watchdog and alarm settings."""

    heartbeat_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often a worker writes its heartbeat (file and Redis key).",
    )
    heartbeat_dir: str = Field(
        default="/tmp/jenga-heartbeat",
        description=(
            "Folder of the heartbeat files read by `jenga worker health` and `jenga beat health`."
        ),
    )
    watchdog_interval_seconds: float = Field(
        default=10.0, gt=0, description="How often beat runs each watchdog."
    )
    beat_lock_ttl_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How long the active beat's lock lasts unless renewed: a standby beat takes over"
            " at most this long (plus `BEAT_LOCK_RENEW_SECONDS`) after the active one dies."
        ),
    )
    beat_lock_renew_seconds: float = Field(
        default=3.0,
        gt=0,
        description=(
            "How often a beat renews its lock (or a standby tries to take it); less than"
            " `BEAT_LOCK_TTL_SECONDS`."
        ),
    )
    beat_name: str = Field(
        default="",
        description=(
            "This beat's name in the lock, its heartbeat file and `jenga beat health`; empty:"
            " `beat@<host name>`."
        ),
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
    metrics_max_applications: int = Field(
        default=20,
        ge=1,
        le=1000,
        description=(
            "Applications with their own label in `jenga_delivery_end_to_end_seconds`: the"
            " ones that delivered most over the last 10 to 20 minutes; the others are summed"
            " up as `other`."
        ),
    )
