"""``/v1/apps``: applications, the tenants of a sender (its own customers).

An application owns endpoints and messages (``/v1/apps/{app}/endpoints``,
``/v1/apps/{app}/messages``). ``uid`` is the sender's own id for it, unique,
usable wherever the id is. Creating, listing all and deleting need an
``admin`` key; a key of one application may read (and, with write scope,
rename) that one only.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import authenticate, require_admin
from api.errors import ApiError
from api.tenancy import app_in_path, current_app, db_session
from common.access.scopes import Principal
from common.delivery.models import DEFAULT_APP_ID, App

router = APIRouter(prefix="/v1/apps", tags=["applications"])

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


def _commit_unique_uid(session: Session, uid: str | None) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, "uid_taken", f"an application with uid {uid!r} exists") from None


@router.post("", status_code=201, response_model=AppOut, dependencies=[Depends(require_admin)])
def create_app(body: AppIn, session: Session = Depends(db_session)) -> AppOut:
    app = App(name=body.name, uid=body.uid)
    session.add(app)
    _commit_unique_uid(session, body.uid)
    session.refresh(app)
    return AppOut.of(app)


@router.get("", response_model=AppList)
def list_apps(
    session: Session = Depends(db_session), principal: Principal = Depends(authenticate)
) -> AppList:
    """Every application an admin key sees; an application key, its own."""
    query = select(App).order_by(App.created_at, App.id).limit(1000)
    readable = principal.readable_apps()
    if readable is not None:
        query = query.where(App.id.in_(readable))
    return AppList(data=[AppOut.of(app) for app in session.scalars(query)])


@router.get("/{app}", response_model=AppOut, dependencies=[Depends(app_in_path)])
def get_app(app: App = Depends(current_app)) -> AppOut:
    return AppOut.of(app)


@router.patch("/{app}", response_model=AppOut, dependencies=[Depends(app_in_path)])
def update_app(
    body: AppUpdate, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> AppOut:
    if body.name is not None:
        app.name = body.name
    if "uid" in body.model_fields_set:
        app.uid = body.uid
    _commit_unique_uid(session, body.uid)
    session.refresh(app)
    return AppOut.of(app)


@router.delete(
    "/{app}",
    status_code=204,
    dependencies=[Depends(app_in_path), Depends(require_admin)],
)
def delete_app(session: Session = Depends(db_session), app: App = Depends(current_app)) -> Response:
    """Delete the application with its endpoints, messages and attempts."""
    if app.id == DEFAULT_APP_ID:
        raise ApiError(
            409, "default_app", "the default application serves /v1/endpoints and /v1/messages"
        )
    session.delete(app)
    session.commit()
    return Response(status_code=204)
