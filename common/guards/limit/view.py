"""Level 4: a limit as people see it (``GET /breakers``, ``jenga breakers``) when Redis
has nothing to tell: the service was never used (or long idle), or Redis is unreachable
and the process runs on its local limit. The view Redis gives is
:meth:`common.guards.limit.store.LimitStore.read`.
"""

from __future__ import annotations

from typing import Any

from common.guards.limit.aimd import AIMDOptions, initial

__all__ = ["fallback_view", "never_used_view"]


def never_used_view(service: str, options: AIMDOptions, local: dict[str, int]) -> dict[str, Any]:
    """No state in Redis: the limit starts at ``LIMIT_INITIAL``, nothing in flight."""
    return {
        "service": service,
        "limit": initial(options),
        "in_flight": 0,
        "min": options.min,
        "max": options.max,
        "window": {"seconds": options.window, "count": 0, "drops": 0},
        "fallback": False,
        "local": local,
    }


def fallback_view(service: str, options: AIMDOptions, local: dict[str, int]) -> dict[str, Any]:
    """Redis unreachable: this process's local limit (``LIMIT_MIN``) and its calls."""
    return {
        "service": service,
        "limit": options.min,
        "in_flight": local["busy"],
        "min": options.min,
        "max": options.max,
        "window": {"seconds": options.window},
        "fallback": True,
        "local": local,
    }
