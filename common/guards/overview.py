"""Level 4: the fleet's breakers and limits as operators see them, read straight
from Redis (``GET /breakers``, ``jenga breakers``, ``GET /metrics``, ``GET /status``).

Every reader raises ``redis.RedisError`` when Redis is unreachable; the caller
says so (workers then run per-process breakers).
"""

from __future__ import annotations

from typing import Any

import redis

from common.guards.breaker.store import BreakerStore
from common.guards.limit.store import list_limits

__all__ = ["fleet_overview", "list_breakers", "list_limits"]


def list_breakers(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """Every breaker of ``namespace`` (state, trips, window counts, probes), sorted by name."""
    store = BreakerStore(client, namespace)
    return [store.read(name) for name in store.names()]


def fleet_overview(client: redis.Redis, namespace: str) -> dict[str, Any]:
    """Every breaker and limit of ``namespace``: the body of ``GET /breakers``."""
    return {
        "fallback": False,
        "breakers": list_breakers(client, namespace),
        "limits": list_limits(client, namespace),
    }
