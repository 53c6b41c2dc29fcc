"""Level 4: the adaptive concurrency limit (AIMD), one per external service.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["LimitSettings"]


class LimitSettings(BaseModel):
    """Adaptive concurrency limit (AIMD) settings."""

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
