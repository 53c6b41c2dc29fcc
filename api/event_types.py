"""``/v1/event-types``: the sender's catalog of the kinds of events it sends.

Fleet-wide, as Svix's are (not per application): the sender's product defines
``order.paid`` once, for all its customers. Any key may read the catalog; only an
``admin`` key changes it (audited). A type may carry a JSON Schema: a message of
that type whose payload fails it is refused with 422 ``payload_invalid``
(:func:`checked_payload`, called by ``POST …/messages``). A message may name a
type that is not in the catalog unless ``EVENT_TYPES_STRICT`` is set (then 422
``unknown_event_type``). ``DELETE`` archives (hidden from the list unless
``?include_archived=true``; its messages are still accepted), ``?expunge=true``
removes it.

Each API process keeps what it read of the catalog for
:data:`CATALOG_CACHE_SECONDS`; a change made through another process applies
to messages within that time, one made through this process at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema_rs
from cachetools import TTLCache
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import ADMIN_ERRORS, KEY_ERRORS, authenticate, require_admin
from api.errors import ApiError, error_responses
from api.pagination import ITERATOR, page_by_name, page_size, split_by_name
from api.tenancy import db_session
from common.access.audit import (
    EVENT_TYPE_ARCHIVED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_UPDATED,
    record,
)
from common.access.scopes import Principal
from common.delivery.event_types import (
    NAME_PATTERN,
    SchemaRefused,
    compile_schema,
    payload_problem,
)
from common.delivery.models import EventType

__all__ = ["CATALOG_CACHE_SECONDS", "checked_payload", "router"]

router = APIRouter(prefix="/v1/event-types", tags=["event types"], responses=KEY_ERRORS)

CATALOG_CACHE_SECONDS = 5.0

NAME = Field(
    min_length=1,
    max_length=200,
    pattern=NAME_PATTERN,
    description="Dotted, e.g. `order.paid`.",
    examples=["order.paid"],
)
SCHEMA_DESCRIPTION = (
    "A JSON Schema every message payload of this type must satisfy"
    " (draft 2020-12 unless `$schema` names another; `$ref`s to URLs are refused)."
)


class EventTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = NAME
    description: str = Field(default="", max_length=2000)
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description=SCHEMA_DESCRIPTION
    )
    deprecated: bool = False


class EventTypeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    schema_: dict[str, Any] | None = Field(
        alias="schema", default=None, description="A new schema; `null` removes it."
    )
    deprecated: bool | None = None
    archived: bool | None = None


class EventTypeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    name: str
    description: str
    schema_: dict[str, Any] | None = Field(alias="schema", description=SCHEMA_DESCRIPTION)
    deprecated: bool
    archived: bool
    created_at: datetime
    updated_at: datetime


class EventTypeList(BaseModel):
    data: list[EventTypeOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


@dataclass(frozen=True)
class _Entry:
    """What a message needs of a type: its compiled schema (None: any payload)."""

    validator: jsonschema_rs.Validator | None


_cache: TTLCache = TTLCache(maxsize=10_000, ttl=CATALOG_CACHE_SECONDS)
_cache_lock = threading.Lock()


def _forget(name: str) -> None:
    with _cache_lock:
        _cache.pop(name, None)


def _entry(session: Session, name: str) -> _Entry | None:
    """The catalog's entry for ``name`` (None: not in the catalog), cached."""
    with _cache_lock:
        if name in _cache:
            return _cache[name]
    row = session.get(EventType, name)
    entry = None
    if row is not None:
        try:
            entry = _Entry(None if row.schema is None else compile_schema(row.schema))
        except SchemaRefused:  # stored before a stricter rule: check nothing rather than 500
            entry = _Entry(None)
    with _cache_lock:
        _cache[name] = entry
    return entry


def checked_payload(request: Request, session: Session, event_type: str, payload: Any) -> None:
    """422 when ``payload`` fails its type's schema, or the type is unknown and the
    catalog is strict (``EVENT_TYPES_STRICT``)."""
    entry = _entry(session, event_type)
    if entry is None:
        if request.app.state.settings.event_types_strict:
            raise ApiError(
                422,
                "unknown_event_type",
                f"event_type {event_type!r} is not in the catalog (/v1/event-types) and"
                " EVENT_TYPES_STRICT is set",
            )
        return
    if entry.validator is not None and (problem := payload_problem(entry.validator, payload)):
        raise ApiError(422, "payload_invalid", f"payload does not match {event_type}: {problem}")


def _schema_or_422(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        compile_schema(schema)
    except SchemaRefused as error:
        raise ApiError(422, "invalid_schema", f"schema refused: {error}") from None
    return schema


def _type_or_404(session: Session, name: str, *, lock: bool = False) -> EventType:
    query = select(EventType).where(EventType.name == name)
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise ApiError(404, "event_type_not_found", f"no event type {name!r}")
    return row


NAME_IN_PATH = Path(min_length=1, max_length=200, pattern=NAME_PATTERN)


@router.post(
    "",
    status_code=201,
    response_model=EventTypeOut,
    response_model_by_alias=True,
    responses={**ADMIN_ERRORS, **error_responses(409)},
)
def create_event_type(
    body: EventTypeIn,
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> EventTypeOut:
    """Add a type to the catalog (409 when the name is taken, archived ones included)."""
    if session.get(EventType, body.name) is not None:
        raise ApiError(409, "event_type_exists", f"event type {body.name!r} exists; PATCH it")
    row = EventType(
        name=body.name,
        description=body.description,
        schema=None if body.schema_ is None else _schema_or_422(body.schema_),
        deprecated=body.deprecated,
    )
    session.add(row)
    record(session, principal.name, EVENT_TYPE_CREATED, body.name)
    session.commit()
    session.refresh(row)
    _forget(body.name)
    return EventTypeOut.model_validate(row)


@router.get("", response_model=EventTypeList, response_model_by_alias=True)
def list_event_types(
    session: Session = Depends(db_session),
    _principal: Principal = Depends(authenticate),
    include_archived: bool = Query(default=False, description="List archived types too."),
    limit: int = page_size(500),
    iterator: str | None = ITERATOR,
) -> EventTypeList:
    """By name, a page at a time."""
    query = select(EventType)
    if not include_archived:
        query = query.where(EventType.archived.is_(False))
    rows, next_iterator, done = split_by_name(
        list(session.scalars(page_by_name(query, EventType.name, iterator, limit))), limit
    )
    return EventTypeList(
        data=[EventTypeOut.model_validate(r) for r in rows], iterator=next_iterator, done=done
    )


@router.get(
    "/{name}",
    response_model=EventTypeOut,
    response_model_by_alias=True,
    responses=error_responses(404),
)
def get_event_type(
    name: str = NAME_IN_PATH,
    session: Session = Depends(db_session),
    _principal: Principal = Depends(authenticate),
) -> EventTypeOut:
    return EventTypeOut.model_validate(_type_or_404(session, name))


@router.patch(
    "/{name}",
    response_model=EventTypeOut,
    response_model_by_alias=True,
    responses={**ADMIN_ERRORS, **error_responses(404)},
)
def update_event_type(
    body: EventTypeUpdate,
    name: str = NAME_IN_PATH,
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> EventTypeOut:
    """Change what is given; `"schema": null` removes the schema."""
    row = _type_or_404(session, name, lock=True)
    given = body.model_fields_set
    if body.description is not None:
        row.description = body.description
    if "schema_" in given:
        row.schema = None if body.schema_ is None else _schema_or_422(body.schema_)
    if body.deprecated is not None:
        row.deprecated = body.deprecated
    if body.archived is not None:
        row.archived = body.archived
    changed = sorted(body.model_dump(exclude_unset=True, by_alias=True))
    record(session, principal.name, EVENT_TYPE_UPDATED, name, {"changed": changed})
    session.commit()
    session.refresh(row)
    _forget(name)
    return EventTypeOut.model_validate(row)


@router.delete(
    "/{name}",
    status_code=204,
    responses={**ADMIN_ERRORS, **error_responses(404)},
)
def delete_event_type(
    name: str = NAME_IN_PATH,
    expunge: bool = Query(default=False, description="Remove it instead of archiving it."),
    session: Session = Depends(db_session),
    principal: Principal = Depends(require_admin),
) -> Response:
    """Archive the type (``?expunge=true``: remove it). Messages already sent keep it."""
    row = _type_or_404(session, name, lock=True)
    if expunge:
        session.delete(row)
        record(session, principal.name, EVENT_TYPE_DELETED, name)
    else:
        row.archived = True
        record(session, principal.name, EVENT_TYPE_ARCHIVED, name)
    session.commit()
    _forget(name)
    return Response(status_code=204)
