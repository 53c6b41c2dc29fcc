"""``/v1/apps``: applications, the tenants of a sender (its own customers).

An application owns endpoints and messages (``/v1/apps/{app}/endpoints``,
``/v1/apps/{app}/messages``). ``uid`` is the sender's own id for it, unique,
usable wherever the id is. Creating, listing all and deleting need an
``admin`` key; a key of one application may read (and, with write scope,
rename) that one only. The rules are ``common/access/app_store.py``'s, shared with
``jenga apps``; creations and deletions are audited.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.auth import KEY_ERRORS, authenticate, require_admin
from api.errors import ApiError, error_responses
from api.tenancy import app_in_path, current_app, db_session
from common.access import app_store
from common.access.scopes import Principal
from common.delivery.models import App

router = APIRouter(prefix="/v1/apps", tags=["applications"], responses=KEY_ERRORS)

UID = Field(
    default=None,
    min_length=1,
    max_length=255,
    pattern=r"^[A-Za-z0-9_.\-]+$",
    description="The sender's own id for this application (its customer id); unique.",
)


class AppIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=500)
    uid: str | None = UID


class AppUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=500)
    uid: str | None = UID


class AppOut(BaseModel):
    id: str
    uid: str | None
    name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, app: App) -> AppOut:
        return cls(
            id=app.id,
            uid=app.uid,
            name=app.name,
            created_at=app.created_at,
            updated_at=app.updated_at,
        )


class AppList(BaseModel):
    data: list[AppOut]


@router.post("", status_code=201, response_model=AppOut, responses=error_responses(403, 409))
def create_app(
    body: AppIn,
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> AppOut:
    try:
        return AppOut.of(app_store.create_app(session, principal.name, body.name, body.uid))
    except app_store.UidTaken as error:
        raise ApiError(409, "uid_taken", str(error)) from None


@router.get("", response_model=AppList)
def list_apps(
    session: Session = Depends(db_session), principal: Principal = Depends(authenticate)
) -> AppList:
    """Every application an admin key sees; an application key, its own."""
    apps = app_store.list_apps(session, principal.readable_apps())
    return AppList(data=[AppOut.of(app) for app in apps])


@router.get(
    "/{app}",
    response_model=AppOut,
    dependencies=[Depends(app_in_path)],
    responses=error_responses(404),
)
def get_app(app: App = Depends(current_app)) -> AppOut:
    return AppOut.of(app)


@router.patch(
    "/{app}",
    response_model=AppOut,
    dependencies=[Depends(app_in_path)],
    responses=error_responses(403, 404, 409),
)
def update_app(
    body: AppUpdate,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
) -> AppOut:
    if body.name is not None:
        app.name = body.name
    if "uid" in body.model_fields_set:
        app.uid = body.uid
    try:
        app_store.commit_unique_uid(session, body.uid)
    except app_store.UidTaken as error:
        raise ApiError(409, "uid_taken", str(error)) from None
    request.app.state.app_cache.clear()  # an old uid stops naming it here at once
    session.refresh(app)
    return AppOut.of(app)


# require_admin before current_app: a key of another application gets 403, not 404.
@router.delete(
    "/{app}",
    status_code=204,
    dependencies=[Depends(app_in_path), Depends(require_admin)],
    responses=error_responses(403, 404, 409),
)
def delete_app(
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(require_admin),
) -> Response:
    """Delete the application with its endpoints, messages and attempts."""
    try:
        app_store.delete_app(session, principal.name, app)
    except app_store.DefaultAppKept as error:
        raise ApiError(409, "default_app", str(error)) from None
    request.app.state.app_cache.clear()
    return Response(status_code=204)
