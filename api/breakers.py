"""Level 4: ``GET /breakers`` (every circuit breaker and concurrency limit, read
straight from Redis) and the admin actions ``POST /breakers/{name}/open|close|reset``
(``Authorization: Bearer $JENGA_ADMIN_TOKEN``).

Redis unreachable: 503 ``redis_unavailable`` with ``fallback: true`` beside the
error — every worker is then running per-process breakers and the fleet-wide view
does not exist.
"""

from __future__ import annotations

import logging
from typing import Literal

import redis
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from api.auth import require_admin
from api.errors import ApiError, error_response, error_responses
from api.operator import OPERATOR_ERRORS, require_operator
from common.access.audit import BREAKER_FORCED, record_alone
from common.access.scopes import Principal
from common.connections.probes import describe_error
from common.guards.force import InvalidBreakerName, UnknownBreaker, force_breaker
from common.guards.overview import fleet_overview
from common.support.logs import log_event

# Operator routes: an admin key, or the private OPS_PORT listener (api/operator.py).
router = APIRouter(
    tags=["breakers"], dependencies=[Depends(require_operator)], responses=OPERATOR_ERRORS
)
log = logging.getLogger("jenga.api")

NO_STORE = {"Cache-Control": "no-store"}


def _unavailable(error: BaseException) -> JSONResponse:
    log_event(log, "breakers.unavailable", level=logging.WARNING, error=describe_error(error))
    return error_response(
        503,
        "redis_unavailable",
        f"breaker state unavailable: Redis is unreachable ({describe_error(error)});"
        " workers fall back to per-process breakers",
        headers=NO_STORE,
        extra={"fallback": True},
    )


@router.get("/breakers")
def breakers(request: Request):
    """Every circuit breaker (state, trips, window counts, probes) and every concurrency limit
    (limit, in flight)."""
    try:
        body = fleet_overview(request.app.state.redis, request.app.state.settings.jenga_namespace)
    except redis.RedisError as error:
        return _unavailable(error)
    return JSONResponse(body, headers=NO_STORE)


@router.post("/breakers/{name}/{action}", responses=error_responses(404))
def force(
    request: Request,
    action: Literal["open", "close", "reset"],
    name: str = Path(description="breaker (service) name"),
    principal: Principal = Depends(require_admin),
):
    """Force a breaker open (until closed), closed, or reset (closed, counts forgotten)."""
    try:
        body = force_breaker(request.app.state.redis, request.app.state.settings, name, action)
    except InvalidBreakerName as error:
        raise ApiError(422, "invalid_breaker_name", str(error)) from None
    except UnknownBreaker as error:
        raise ApiError(404, "breaker_not_found", str(error)) from None
    except redis.RedisError as error:
        return _unavailable(error)
    log_event(log, "breaker.forced", level=logging.WARNING, breaker=name, action=action)
    record_alone(request.app.state.engine, principal.name, BREAKER_FORCED, name, {"action": action})
    return JSONResponse(body, headers=NO_STORE)
