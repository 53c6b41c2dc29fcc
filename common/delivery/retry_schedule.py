"""The delivery retry schedule, and what one attempt's outcome means for a
message. Pure functions: no clock, no database, no HTTP.

* :func:`parse_schedule` reads ``DELIVERY_RETRY_SCHEDULE`` (``"5s,5m,30m,2h,5h,10h,10h"``):
  the delays *between* attempts. The first attempt is immediate, so the default
  allows 8 attempts over about 27 hours (the schedule Svix publishes).
* :func:`decide` maps an attempt's outcome to the message's next state:
  delivered, retry after a delay (the schedule's, jittered, or the receiver's
  ``Retry-After`` when that is longer), or failed once the schedule is used up.
  ``410 Gone`` also disables the endpoint: the receiver told us it will never
  want these again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from common.support.durations import parse_schedule
from common.support.retry_after import retry_after_seconds

__all__ = [
    "DEFAULT_SCHEDULE",
    "MAX_RETRY_AFTER_SECONDS",
    "Decision",
    "Outcome",
    "decide",
    "honoured_retry_after",
    "jittered",
    "parse_retry_after",
    "parse_schedule",
]

DEFAULT_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
# A Retry-After beyond this is treated as this: a receiver must not park a
# message for weeks, and the schedule's own longest gap is 10 h.
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


def jittered(
    delay: float, jitter: float, rand: Callable[[float, float], float] = random.uniform
) -> float:
    """``delay`` plus up to ``jitter`` (a fraction) of itself, so retries of
    messages that failed together (a receiver outage) do not return together."""
    return delay + rand(0.0, delay * jitter)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    return retry_after_seconds(value, now.timestamp(), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class Outcome:
    """What happened on one attempt: an HTTP status, or an error class when
    there was no response (timeout, refused connection, refused destination)."""

    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from the response's Retry-After

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Decision:
    status: str  # "delivered" | "pending" | "failed"
    retry_in: float | None = None  # seconds until the next attempt, when pending
    disable_endpoint: bool = False


def decide(
    outcome: Outcome,
    position: int,
    delays: tuple[float, ...],
    jitter: float = 0.0,
    rand: Callable[[float, float], float] = random.uniform,
) -> Decision:
    """The message's next state after the attempt at ``position`` (0 = first
    attempt of the current schedule round) ended with ``outcome``."""
    if outcome.succeeded:
        return Decision("delivered")
    if outcome.status_code == 410:
        return Decision("failed", disable_endpoint=True)
    if position >= len(delays):
        return Decision("failed")
    retry_in = jittered(delays[position], jitter, rand)
    if outcome.status_code in (429, 503):
        retry_in = max(retry_in, honoured_retry_after(outcome.retry_after))
    return Decision("pending", retry_in=retry_in)


def honoured_retry_after(seconds: float | None) -> float:
    """How much of a receiver's ``Retry-After`` we honour: at most
    ``MAX_RETRY_AFTER_SECONDS``; absent, negative or not a number counts as 0.
    It can only lengthen the schedule's delay: ``Retry-After: 0`` from a busy
    receiver must not turn our back-off into hammering it."""
    if seconds is None or math.isnan(seconds) or seconds <= 0:
        return 0.0
    return min(seconds, MAX_RETRY_AFTER_SECONDS)
