"""Which application a ``/v1`` request is about, and whether its key may touch it.

Routes under ``/v1/apps/{app}/…`` name the application by id (``app_…``) or by
the sender's ``uid``; the routes without one (``/v1/endpoints``,
``/v1/messages``, kept for one release) mean the default application. A key
that may not read the application gets 404, exactly as for one that does not
exist, so ids of other tenants never leak; a read-only key that tries to write
gets 403. Routes declare those answers: :data:`APP_ERRORS`, and
:data:`WRITE_ERRORS` on the ones that write.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from api.auth import KEY_ERRORS, authenticate
from api.errors import ApiError, error_responses
from common.access.app_store import find_app
from common.access.scopes import Principal
from common.delivery.models import DEFAULT_APP_ID, App

__all__ = ["APP_ERRORS", "WRITE_ERRORS", "app_in_path", "current_app", "db_session", "find_app"]

READ_METHODS = ("GET", "HEAD", "OPTIONS")
APP_ERRORS = {**KEY_ERRORS, **error_responses(404)}
WRITE_ERRORS = error_responses(403)  # a read-only key


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
    app = find_app(session, ref)
    if app is None or not principal.may_read(app.id):
        raise ApiError(404, "app_not_found", f"no application {ref!r}")
    if request.method not in READ_METHODS and not principal.may_write(app.id):
        raise HTTPException(status_code=403, detail="this key may only read this application")
    return app
