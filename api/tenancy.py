"""Which application a ``/v1`` request is about, and whether its key may touch it.

Routes under ``/v1/apps/{app}/…`` name the application by id (``app_…``) or by
the sender's ``uid``; the routes without one (``/v1/endpoints``,
``/v1/messages``, kept for one release) mean the default application. A key
that may not read the application gets 404, exactly as for one that does not
exist, so ids of other tenants never leak; a read-only key that tries to write
gets 403. Routes declare those answers: :data:`APP_ERRORS`, and
:data:`WRITE_ERRORS` on the ones that write.

:func:`sending_app` is :func:`current_app` for the accept path (``POST …/messages``):
the application is looked up once per ``APP_CACHE_SECONDS`` per process, like keys
(:mod:`api.auth`); the key's scopes are checked on every request. A deleted
application's messages are refused by PostgreSQL (its foreign key) meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cachetools import TTLCache
from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from api.auth import KEY_ERRORS, authenticate
from api.errors import ApiError, error_responses
from common.access.app_store import find_app
from common.access.scopes import Principal
from common.delivery.models import DEFAULT_APP_ID, App

__all__ = [
    "APP_CACHE_SECONDS",
    "APP_ERRORS",
    "WRITE_ERRORS",
    "app_in_path",
    "current_app",
    "db_session",
    "find_app",
    "AppCache",
    "sending_app",
]

READ_METHODS = ("GET", "HEAD", "OPTIONS")
APP_ERRORS = {**KEY_ERRORS, **error_responses(404)}
WRITE_ERRORS = error_responses(403)  # a read-only key
APP_CACHE_SECONDS = 5.0


class AppCache:
    """Applications by id or uid, for ``APP_CACHE_SECONDS``: one per API (``app.state``)."""

    def __init__(self) -> None:
        self._apps: TTLCache = TTLCache(maxsize=10_000, ttl=APP_CACHE_SECONDS)
        self._lock = threading.Lock()

    def get(self, ref: str) -> App | None:
        with self._lock:
            return self._apps.get(ref)

    def put(self, ref: str, app: App) -> None:
        with self._lock:
            self._apps[ref] = app

    def clear(self) -> None:
        """Forget them all: a change made by this process is seen at once."""
        with self._lock:
            self._apps.clear()


def db_session(request: Request) -> Iterator[Session]:
    """A session on the read pool for reads, on the write pool otherwise: however
    many slow lists are in flight, a message can still be accepted."""
    reading = request.method in READ_METHODS
    engine = request.app.state.read_engine if reading else request.app.state.engine
    with Session(engine, expire_on_commit=False) as session:
        yield session


def app_in_path(
    app: str = Path(
        min_length=1,
        max_length=255,
        description="The application's id (`app_…`) or its `uid`.",
        examples=[DEFAULT_APP_ID],
    ),
) -> None:
    """Declares ``{app}`` for the routes mounted under ``/v1/apps/{app}/``."""


def current_app(
    request: Request,
    session: Session = Depends(db_session),
    principal: Principal = Depends(authenticate),
) -> App:
    """The application of the request, checked against the key's scopes."""
    ref = request.path_params.get("app", DEFAULT_APP_ID)
    return _allowed(request, principal, ref, find_app(session, ref))


def sending_app(
    request: Request,
    session: Session = Depends(db_session),
    principal: Principal = Depends(authenticate),
) -> App:
    """:func:`current_app`, the application read at most once per ``APP_CACHE_SECONDS``
    (a copy detached from any session: read its columns only)."""
    ref = request.path_params.get("app", DEFAULT_APP_ID)
    cache: AppCache = request.app.state.app_cache
    app = cache.get(ref)
    if app is None:
        app = find_app(session, ref)
        if app is not None:
            session.expunge(app)
            cache.put(ref, app)
    return _allowed(request, principal, ref, app)


def _allowed(request: Request, principal: Principal, ref: str, app: App | None) -> App:
    if app is None or not principal.may_read(app.id):
        raise ApiError(404, "app_not_found", f"no application {ref!r}")
    if request.method not in READ_METHODS and not principal.may_write(app.id):
        raise HTTPException(status_code=403, detail="this key may only read this application")
    return app
