"""JSON errors for every failure the API can have.

Every error body has the same shape, so clients branch on a stable ``code``::

    {"error": {"code": "unknown_endpoint", "message": "...", "details": [...]},
     "detail": "..."}

(``detail`` keeps FastAPI's usual field for clients that read it.)

* bad input: 400 (malformed JSON) or 422 (invalid fields, or a value
  PostgreSQL refuses to store, such as a ``\\u0000`` character), never a 500;
* PostgreSQL unreachable: 503 with ``Retry-After``: the request changed
  nothing, try again (with the same ``Idempotency-Key`` for messages);
* anything unexpected: 500 with a generic message; the details go to the log
  (scrubbed of secrets), not to the client.

:class:`ErrorBody` is that shape as a model: :func:`error_response` builds every
error body through it, and :func:`error_responses` documents it in the OpenAPI
document for the statuses an operation can answer (see :mod:`api.openapi`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.connections.probes import describe_error
from common.support.logs import log_event

log = logging.getLogger("jenga.api")

DATABASE_RETRY_AFTER_SECONDS = 5
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    503: "unavailable",
}

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
# What each error status means across the API; the error codes are the values of `error.code`.
ERROR_STATUSES: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body is not valid JSON (`malformed_json`), or JSON this API cannot read"
        " (`bad_request`: nested too deep, a number of thousands of digits).",
        {},
    ),
    401: (
        "No key, or an unknown or revoked one (`unauthorized`).",
        {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    ),
    403: (
        "The key may not do this (`forbidden`): no `admin` scope, a read-only key for a write,"
        " or the admin API disabled (no JENGA_ADMIN_TOKEN).",
        {},
    ),
    404: (
        "No such thing (`app_not_found`, `endpoint_not_found`, `message_not_found`,"
        " `key_not_found`, `breaker_not_found`, `job_not_found`); another application's ids"
        " answer the same.",
        {},
    ),
    409: (
        "Refused in the current state (`uid_taken`, `endpoint_disabled`, `default_app`,"
        " `job_finished`).",
        {},
    ),
    413: ("The body or the payload is over the limit (`payload_too_large`).", {}),
    422: (
        "Invalid input: `invalid_request` (with `details` per field) or a specific code"
        " (`invalid_url`, `invalid_scope`, `invalid_iterator`, `unknown_endpoint`,"
        " `idempotency_key_reused`, `invalid_breaker_name`).",
        {},
    ),
    429: ("Over this key's rate limit (`rate_limited`).", RETRY_AFTER),
    503: (
        "PostgreSQL is unavailable (`database_unavailable`): nothing was stored, retry later;"
        " on the operator routes, Redis (`redis_unavailable`).",
        RETRY_AFTER,
    ),
}


class FieldError(BaseModel):
    field: str = Field(description="Where, e.g. `payload` or `query.limit`.")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable, for programs to branch on: `invalid_request`, ...")
    message: str = Field(description="For people: what is wrong and what to do.")
    details: list[FieldError] | None = Field(
        default=None, description="One entry per invalid field (`invalid_request`)."
    )


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer of the API."""

    error: ErrorInfo
    detail: str = Field(description="`error.message` again, FastAPI's usual field.")


# api/openapi.py puts the schema there.
ERROR_SCHEMA_REF = f"#/components/schemas/{ErrorBody.__name__}"


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of ``statuses``, each with the :class:`ErrorBody` schema
    (always ``application/json``, whatever the operation's own media type)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = ERROR_STATUSES[status]
        response: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": ERROR_SCHEMA_REF}}},
        }
        if headers:
            response["headers"] = headers
        responses[status] = response
    return responses


class ApiError(Exception):
    """An expected failure, answered as JSON with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """An :class:`ErrorBody` answer; ``extra`` adds members beside ``error`` and ``detail``."""
    body = ErrorBody(
        error=ErrorInfo(
            code=code,
            message=message,
            details=None if details is None else [FieldError(**d) for d in details],
        ),
        detail=message,
    )
    content = {**body.model_dump(exclude_none=True), **(extra or {})}
    return JSONResponse(content, status_code=status, headers=headers)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, headers=error.headers)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    message = error.detail if isinstance(error.detail, str) else "request refused"
    return error_response(
        error.status_code,
        STATUS_CODES.get(error.status_code, "error"),
        message,
        headers=getattr(error, "headers", None),
    )


def _where(location: tuple | list) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = error.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    details = [{"field": _where(p.get("loc", ())), "message": p.get("msg", "")} for p in problems]
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return error_response(422, "invalid_request", f"invalid request: {summary}", details)


async def _database_error(request: Request, error: Exception) -> JSONResponse:
    if isinstance(error, DataError):
        # SQLSTATE class 22 (or psycopg refusing a NUL byte before sending): the
        # request carried a value PostgreSQL cannot store. Our statements are fixed,
        # so it is the input that is wrong: a 4xx, not a 500.
        reason = describe_error(error.orig) if error.orig is not None else "DataError"
        log_event(log, "api.unstorable_input", logging.INFO, path=request.url.path, error=reason)
        return error_response(
            422,
            "invalid_request",
            "the request holds a value PostgreSQL cannot store"
            f" ({reason.partition(': ')[2] or reason})",
        )
    if isinstance(error, DBAPIError) and not _is_connection_error(error):
        return await _unexpected(request, error)
    log_event(
        log,
        "api.database_unavailable",
        logging.WARNING,
        path=request.url.path,
        error=describe_error(error),
    )
    return error_response(
        503,
        "database_unavailable",
        "PostgreSQL is unavailable; nothing was stored. Retry later.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _is_connection_error(error: DBAPIError) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log_event(
        log,
        "api.unexpected_error",
        logging.ERROR,
        path=request.url.path,
        error=describe_error(error),
    )
    return error_response(500, "internal_error", "internal error; it has been logged")


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
