"""``/v1/keys``: API keys, made and revoked by an ``admin`` key.

A key is shown once, in the answer that creates it, and stored only as its
hash (``common/access/keys.py``); lists show its prefix. Scopes: ``admin``,
``app:<app>`` (everything in one application), ``app:<app>:read``; the
application may be named by id or uid and is stored by id. A revoked key
stops working within ``KEY_CACHE_SECONDS`` in every API process. The rules are
``common/access/key_store.py``'s, shared with ``jenga keys``; each change is audited.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.auth import ADMIN_ERRORS, forget_cached_keys, require_admin
from api.errors import ApiError, error_responses
from api.tenancy import db_session
from common.access import key_store
from common.access.scopes import Principal
from common.delivery.models import ApiKey

router = APIRouter(
    prefix="/v1/keys",
    tags=["keys"],
    dependencies=[Depends(require_admin)],
    responses=ADMIN_ERRORS,
)


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


@router.post("", status_code=201, response_model=KeyCreated)
def create_key(
    body: KeyIn,
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> KeyCreated:
    try:
        row, key = key_store.create_key(session, principal.name, body.scopes, body.name)
    except key_store.InvalidScope as error:
        raise ApiError(422, "invalid_scope", str(error)) from None
    return KeyCreated(**KeyOut.of(row).model_dump(), key=key)


@router.get("", response_model=KeyList)
def list_keys(session: Session = Depends(db_session)) -> KeyList:
    return KeyList(data=[KeyOut.of(row) for row in key_store.list_keys(session)])


@router.delete("/{key_id}", status_code=204, responses=error_responses(404))
def revoke_key(
    key_id: str,
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> Response:
    try:
        key_store.revoke_key(session, principal.name, key_id)
    except key_store.UnknownKey as error:
        raise ApiError(404, "key_not_found", str(error)) from None
    forget_cached_keys()
    return Response(status_code=204)
