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
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
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


class ApiError(Exception):
    """An expected failure, answered as JSON with ``status`` and ``code``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error, "detail": message}, status_code=status, headers=headers)


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
