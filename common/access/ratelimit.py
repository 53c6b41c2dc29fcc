"""Fair use: the token-bucket rule of the per-key request rate limit (pure, no I/O).

Every key has a bucket of ``burst`` tokens that refills at ``per_second`` tokens a
second, never past ``burst``; a request takes one token, and a request that finds
less than one is refused (and takes nothing). So over any stretch of ``t`` seconds a
key gets at most ``burst + per_second × t`` requests through, and an idle key may
spend its whole burst at once.

The arithmetic is in integers, so that it is exact and ``ratelimit.lua``, its twin
that applies it atomically in Redis for every API process at once (Lua numbers are
doubles: every value here stays far below 2**53), computes the very same numbers:
time in microseconds, tokens in millionths (:data:`MICRO` per token), the rate a
whole number of tokens a second (one token a second is then one millionth a
microsecond). A test runs random sequences through both and demands they agree.

A missing bucket is a full one, so the bucket's Redis key may expire once it would
have filled up again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["MICRO", "Bucket", "Decision", "RateOptions", "refill", "take"]

MICRO = 1_000_000  # millionths of a token in a token; microseconds in a second


@dataclass(frozen=True)
class RateOptions:
    """One key's limit: ``per_second`` tokens a second, at most ``burst`` saved up."""

    per_second: int
    burst: int

    def __post_init__(self) -> None:
        problems = []
        if self.per_second < 1:
            problems.append("per_second must be >= 1 (a limit of 0 is no limit: no options)")
        if self.burst < 1:
            problems.append("burst must be >= 1")
        if problems:
            raise ValueError("invalid rate limit: " + "; ".join(problems))

    @property
    def capacity(self) -> int:
        """The bucket's size in millionths of a token."""
        return self.burst * MICRO

    @classmethod
    def from_settings(cls, settings: Any) -> RateOptions | None:
        """The options named by the ``API_RATE_LIMIT_*`` settings; None when the limit
        is off (``API_RATE_LIMIT_PER_SECOND=0``)."""
        if settings.api_rate_limit_per_second == 0:
            return None
        return cls(settings.api_rate_limit_per_second, settings.api_rate_limit_burst)


@dataclass(frozen=True)
class Bucket:
    """``tokens`` millionths of a token as of ``at`` (microseconds)."""

    tokens: int
    at: int


@dataclass(frozen=True)
class Decision:
    """One request's verdict and the bucket after it. ``retry_us``: how long until a
    refused request would get through (0 when allowed); ``reset_us``: how long until
    the bucket is full again."""

    allowed: bool
    bucket: Bucket
    retry_us: int
    reset_us: int

    @property
    def remaining(self) -> int:
        """Whole requests the key may still make at once."""
        return self.bucket.tokens // MICRO

    @property
    def retry_after(self) -> int:
        """``Retry-After`` in whole seconds, at least 1 (only meaningful when refused)."""
        return max(1, -(-self.retry_us // MICRO))

    @property
    def reset_after(self) -> int:
        """Whole seconds until the bucket is full again (``RateLimit-Reset``)."""
        return -(-self.reset_us // MICRO)


def refill(bucket: Bucket | None, now: int, options: RateOptions) -> Bucket:
    """``bucket`` as of ``now``. A clock that went back (a test's, or Redis failing over
    to a host whose clock is behind) adds nothing and does not move ``at`` back, so the
    time in between is never counted twice."""
    if bucket is None:
        return Bucket(options.capacity, now)
    elapsed = max(0, now - bucket.at)
    return Bucket(
        min(options.capacity, bucket.tokens + elapsed * options.per_second), max(bucket.at, now)
    )


def take(bucket: Bucket | None, now: int, options: RateOptions) -> Decision:
    """One request at ``now`` (microseconds) against ``bucket`` (None: never used, or
    its key expired: full)."""
    current = refill(bucket, now, options)
    tokens = current.tokens
    allowed = tokens >= MICRO
    retry_us = 0
    if allowed:
        tokens -= MICRO
    else:
        retry_us = math.ceil((MICRO - tokens) / options.per_second)
    reset_us = math.ceil((options.capacity - tokens) / options.per_second)
    return Decision(allowed, Bucket(tokens, current.at), retry_us, reset_us)
