"""``/v1/keys``: API keys, made and revoked by an ``admin`` key.

A key is shown once, in the answer that creates it, and stored only as its
hash (``common/access/keys.py``); lists show its prefix. Scopes: ``admin``,
``app:<app>`` (everything in one application), ``app:<app>:read``; the
application may be named by id or uid and is stored by id. A revoked key
stops working within ``KEY_CACHE_SECONDS`` in every API process.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import forget_cached_keys, require_admin
from api.errors import ApiError
from api.tenancy import db_session, find_app
from common.access.keys import key_hash, key_prefix, new_key
from common.access.scopes import Scope, parse_scope
from common.delivery.models import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(require_admin)])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=500, description="Free text for people.")
    scopes: list[str] = Field(
        min_length=1,
        max_length=100,
        description="`admin`, `app:<app>` or `app:<app>:read` (the app by id or uid).",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            scopes=row.scopes,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself. Shown only now: store it.")


class KeyList(BaseModel):
    data: list[KeyOut]


def resolved(session: Session, text: str) -> str:
    """``text`` as a stored scope (the application by id); 422 when it names nothing."""
    try:
        scope = parse_scope(text)
    except ValueError as error:
        raise ApiError(422, "invalid_scope", str(error)) from None
    if scope.app is None:
        return str(scope)
    app = find_app(session, scope.app)
    if app is None:
        raise ApiError(422, "invalid_scope", f"no application {scope.app!r}")
    return str(Scope(app.id, scope.read_only))


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(body: KeyIn, session: Session = Depends(db_session)) -> KeyCreated:
    scopes = sorted({resolved(session, text) for text in body.scopes})
    key = new_key()
    row = ApiKey(name=body.name, prefix=key_prefix(key), key_hash=key_hash(key), scopes=scopes)
    session.add(row)
    session.commit()
    session.refresh(row)
    return KeyCreated(**KeyOut.of(row).model_dump(), key=key)


@router.get("", response_model=KeyList)
def list_keys(session: Session = Depends(db_session)) -> KeyList:
    rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(1000))
    return KeyList(data=[KeyOut.of(row) for row in rows])


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, session: Session = Depends(db_session)) -> Response:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise ApiError(404, "key_not_found", f"no key {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = session.scalar(select(func.now()))
        session.commit()
    forget_cached_keys()
    return Response(status_code=204)
