"""Level 3: ``GET /alarms``, the open alarms and the latest set/clear events,
read from the fleet-wide :class:`~common.alarms.store.AlarmStore` in Redis.

When Redis is unreachable the answer is 503 ``redis_unavailable`` with the reason,
not a 500: the alarm state lives there, and the Redis watchdog is telling people
about it.
"""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from api.errors import error_response
from api.operator import OPERATOR_ERRORS, require_operator
from common.alarms.store import AlarmStore
from common.connections.probes import describe_error
from common.support.logs import log_event

# Operator routes: an admin key, or the private OPS_PORT listener (api/operator.py).
router = APIRouter(
    tags=["alarms"], dependencies=[Depends(require_operator)], responses=OPERATOR_ERRORS
)
log = logging.getLogger("jenga.api")


def store_for(request: Request) -> AlarmStore:
    return AlarmStore.for_settings(request.app.state.redis, request.app.state.settings)


@router.get("/alarms")
def alarms(
    request: Request, limit: int = Query(50, ge=1, le=1000, description="How many history events")
):
    """Active alarms (oldest first) and the latest set/clear events (newest first)."""
    store = store_for(request)
    try:
        active = store.active()
        history = store.history(limit)
    except redis.RedisError as error:
        log_event(log, "alarms.unavailable", level=logging.WARNING, error=describe_error(error))
        return error_response(
            503,
            "redis_unavailable",
            f"alarm state unavailable: Redis is unreachable ({describe_error(error)})",
            headers={"Cache-Control": "no-store"},
        )
    return JSONResponse(
        {"active": active, "history": history}, headers={"Cache-Control": "no-store"}
    )
