"""Level 2: the API's own health.

* ``GET /live``: 200 whenever the process can answer; never looks at a dependency,
  so a PostgreSQL outage does not get the API restarted.
* ``GET /up``: readiness. 200 ``{"status": "OK"}`` when PostgreSQL, Redis and the
  broker are all up, else 503 ``{"status": "LOADING", "missing": [...]}``.
* ``GET /health``: the detail per dependency, ``application/health+json``
  (draft-inadarei-api-health-check): pass/warn/fail, latency, time, output.

``/up`` and ``/health`` read the state kept by the dependency monitors
(:mod:`common.connections.dependency`) and never wait on a server, so a dead one costs a
request nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.errors import ERROR_SCHEMA_REF
from api.operator import OPERATOR_ERRORS, require_operator
from common.connections.dependency import Dependencies, DependencyState

router = APIRouter(tags=["health"])

HEALTH_JSON = "application/health+json"
CHECK_STATUS = {"up": "pass", "connecting": "warn", "down": "fail"}
COMPONENT_TYPE = {"postgres": "datastore", "redis": "datastore", "broker": "system"}
NO_CACHE = {"Cache-Control": "no-store"}


class HealthJSONResponse(JSONResponse):
    media_type = HEALTH_JSON


# The shapes below document the answers (the routes build them as dicts).
class Liveness(BaseModel):
    status: Literal["OK"]


class Readiness(BaseModel):
    status: Literal["OK", "LOADING"]
    missing: list[str] | None = Field(default=None, description="What is not reachable yet.")
    dependencies: dict[str, str] | None = Field(
        default=None, description="Each dependency's state: `up`, `connecting` or `down`."
    )


class HealthCheckResult(BaseModel):
    componentId: str
    componentType: str
    status: Literal["pass", "warn", "fail"]
    time: str | None
    observedUnit: str
    observedValue: float | None
    state: str
    changedAt: str | None
    output: str | None = Field(default=None, description="Why, when the status is not `pass`.")


class HealthDocument(BaseModel):
    status: Literal["pass", "warn", "fail"]
    description: str
    checks: dict[str, list[HealthCheckResult]]


HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **OPERATOR_ERRORS,
    # A check fails (health+json); or, before that, a key could not be looked up (JSON error).
    503: {
        "model": HealthDocument,
        "description": "A dependency is down (`status: fail`); or PostgreSQL is, for an API"
        " key (`database_unavailable`).",
        "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
    },
}


async def startup(app: FastAPI) -> None:
    app.state.dependencies = Dependencies.from_settings(
        app.state.settings, engine=app.state.engine, redis=app.state.redis
    ).start()


async def shutdown(app: FastAPI) -> None:
    dependencies = getattr(app.state, "dependencies", None)
    if dependencies is not None:
        dependencies.stop()


def _snapshot(request: Request) -> dict[str, DependencyState]:
    dependencies = getattr(request.app.state, "dependencies", None)
    return dependencies.snapshot() if dependencies is not None else {}


@router.get("/live", response_model=Liveness)
async def live() -> dict[str, str]:
    """200 whenever the process can answer, whatever its dependencies."""
    return {"status": "OK"}


@router.get(
    "/up",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not reachable yet."}},
)
async def up(request: Request) -> JSONResponse:
    """Readiness: 200 when PostgreSQL, Redis and the broker are all reachable."""
    snapshot = _snapshot(request)
    missing = [name for name, state in snapshot.items() if not state.up]
    if snapshot and not missing:
        return JSONResponse({"status": "OK"}, headers=NO_CACHE)
    return JSONResponse(
        {
            "status": "LOADING",
            "missing": missing or ["dependencies"],
            "dependencies": {name: state.state for name, state in snapshot.items()},
        },
        status_code=503,
        headers=NO_CACHE,
    )


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def health_document(snapshot: dict[str, DependencyState]) -> dict[str, Any]:
    """The ``application/health+json`` body for a snapshot (a pure function)."""
    checks: dict[str, list[dict[str, Any]]] = {}
    statuses = []
    for name, state in snapshot.items():
        status = CHECK_STATUS[state.state]
        statuses.append(status)
        check: dict[str, Any] = {
            "componentId": name,
            "componentType": COMPONENT_TYPE.get(name, "component"),
            "status": status,
            "time": _iso(state.checked_at or state.changed_at),
            "observedUnit": "ms",
            "observedValue": None
            if state.latency_seconds is None
            else round(state.latency_seconds * 1000, 2),
            "state": state.state,
            "changedAt": _iso(state.changed_at),
        }
        if status != "pass":
            check["output"] = state.last_error or "not checked yet"
        checks[f"{name}:responseTime"] = [check]
    overall = (
        "fail" if "fail" in statuses or not statuses else ("warn" if "warn" in statuses else "pass")
    )
    return {
        "status": overall,
        "description": "Jenga API: PostgreSQL, Redis and broker reachability",
        "checks": checks,
    }


@router.get(
    "/health",
    response_class=HealthJSONResponse,
    response_model=HealthDocument,
    responses=HEALTH_RESPONSES,
    dependencies=[Depends(require_operator)],
)
async def health(request: Request) -> HealthJSONResponse:
    """Detail per dependency (application/health+json); 503 when any check fails."""
    document = health_document(_snapshot(request))
    return HealthJSONResponse(
        document, status_code=503 if document["status"] == "fail" else 200, headers=NO_CACHE
    )
