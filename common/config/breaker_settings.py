"""Level 4: circuit breakers and the guard around a call to a service.

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["BreakerSettings"]


class BreakerSettings(BaseModel):
    """Circuit breakers and the call guard."""

    breaker_failure_threshold: int = Field(
        default=5,
        ge=0,
        description="Consecutive failed calls that open a service's breaker (0 = rule off).",
    )
    breaker_timeout_weight: int = Field(
        default=3,
        ge=1,
        description=(
            "Consecutive failures a call that timed out counts as (it held its slot for the"
            " whole deadline): with the default threshold, two timeouts open the breaker."
        ),
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
        description=(
            "A trial call that never reports (its worker died) frees its slot after this; never"
            " less than `DELIVERY_CONNECT_TIMEOUT_SECONDS` + `DELIVERY_TIMEOUT_SECONDS` + 5 s."
        ),
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
