"""Fair use: every authenticated request takes a token from its key's bucket.

One bucket per principal (an API key, by its visible prefix; or the admin token),
in Redis, shared by every API process (``common/access/ratelimit.py`` is the rule,
``ratelimit.lua`` applies it atomically). :func:`enforce_rate_limit` is called by
:func:`api.auth.authenticate`, so every route that needs a key is limited, once
per request however many dependencies authenticate it.

* allowed: the answer carries ``RateLimit-Limit`` (the burst), ``RateLimit-Remaining``
  and ``RateLimit-Reset`` (seconds until the bucket is full again), after the IETF
  draft ``draft-ietf-httpapi-ratelimit-headers``; routes that build their own
  ``Response`` (a 204) go without them;
* over the limit: 429 ``rate_limited`` with those headers and ``Retry-After``;
* Redis unreachable: the request goes through unlimited (fail open: the limit
  protects the service, an outage of it must not take the API down), logged once
  per outage; Redis is left alone for :data:`OUTAGE_PAUSE_SECONDS` after a failure,
  so a Redis that times out does not add its timeout to every request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from fastapi import FastAPI, Request, Response

from api.errors import ApiError
from common.access.ratelimit import Decision, RateOptions
from common.access.ratelimit_store import RateLimitStore
from common.access.scopes import Principal
from common.config import Settings
from common.connections.probes import describe_error
from common.support.logs import log_event

__all__ = ["OUTAGE_PAUSE_SECONDS", "RateLimiter", "enforce_rate_limit", "limiter_of"]

log = logging.getLogger("jenga.api")

OUTAGE_PAUSE_SECONDS = 1.0
_build_lock = threading.Lock()


class RateLimiter:
    """The rate limit of one API application (its Redis client and settings).

    ``clock`` (seconds) replaces Redis's clock for the buckets (tests that control
    time); ``pause``: how long Redis is left alone after a failure."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        *,
        clock: Callable[[], float] | None = None,
        pause: float = OUTAGE_PAUSE_SECONDS,
    ):
        self.options = RateOptions.from_settings(settings)
        self.store = RateLimitStore(
            client, settings.jenga_namespace, caller_clock=clock is not None
        )
        self._clock = clock
        self._pause = pause
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0

    def take(self, principal: str) -> Decision | None:
        """One request of ``principal``; None when nothing limits it (the limit is off,
        or Redis is unreachable)."""
        if self.options is None or time.monotonic() < self._retry_at:
            return None
        now_us = None if self._clock is None else round(self._clock() * 1_000_000)
        try:
            decision = self.store.take(principal, self.options, now_us)
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return None
        if self._down:
            self._recovered()
        return decision

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            self._retry_at = time.monotonic() + self._pause
            first, self._down = not self._down, True
        if first:
            log_event(
                log,
                "api.rate_limit_unavailable",
                logging.WARNING,
                error=describe_error(error),
                detail="Redis unreachable: API requests go through without a rate limit"
                " until it answers again",
            )

    def _recovered(self) -> None:
        with self._lock:
            first, self._down = self._down, False
        if first:
            log_event(log, "api.rate_limit_restored", logging.INFO)


def limiter_of(app: FastAPI) -> RateLimiter:
    """``app``'s rate limiter, built on first use (``app.state.rate_limiter``; a test
    may install its own)."""
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        with _build_lock:
            limiter = getattr(app.state, "rate_limiter", None)
            if limiter is None:
                limiter = RateLimiter(app.state.redis, app.state.settings)
                app.state.rate_limiter = limiter
    return limiter


def rate_headers(decision: Decision, options: RateOptions) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(options.burst),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_after),
    }


def enforce_rate_limit(request: Request, response: Response | None, principal: Principal) -> None:
    """Take a token for this request from ``principal``'s bucket (once per request);
    429 when there is none, the RateLimit headers on ``response`` (if any) when there was."""
    if getattr(request.state, "rate_limited", False):
        return
    request.state.rate_limited = True
    limiter = limiter_of(request.app)
    decision = limiter.take(principal.name)
    if decision is None or limiter.options is None:
        return
    headers = rate_headers(decision, limiter.options)
    if not decision.allowed:
        options = limiter.options
        raise ApiError(
            429,
            "rate_limited",
            f"{principal.name} is over its rate limit of {options.per_second} requests a second"
            f" (burst {options.burst}): retry after {decision.retry_after} s",
            headers={**headers, "Retry-After": str(decision.retry_after)},
        )
    if response is not None:
        response.headers.update(headers)
