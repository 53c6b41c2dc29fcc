"""Redis clients with bounded timeouts. redis-py connects lazily, so creating a
client never touches the network: boot never waits on Redis."""

from __future__ import annotations

import redis

from common.config import Settings


def make_redis(url: str, timeout: float) -> redis.Redis:
    """A client whose every connect and command gives up after ``timeout`` seconds."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=15,
        decode_responses=True,
        # Retries belong to the callers (backoff with jitter, breakers); a hidden
        # retry here would multiply the time a dead server costs.
        retry_on_timeout=False,
    )


def redis_for(settings: Settings) -> redis.Redis:
    """The Redis client of a process, with the check timeout as its bound."""
    return make_redis(settings.redis_url, settings.check_timeout_seconds)
