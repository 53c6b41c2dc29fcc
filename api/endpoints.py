"""``/v1/apps/{app}/endpoints`` (and ``/v1/endpoints``, the default
application's, for one release): where webhooks go.

An endpoint is a URL plus a signing secret. Jenga generates the secret
(``whsec_...``, or takes the sender's) and returns it in the answer to the create
call; after that ``GET …/secret`` shows it to a key that may write the application.
``POST …/secret/rotate`` replaces it, keeping the old one signing too for a grace
(:mod:`common.delivery.signing`). The URL must pass the SSRF policy
(:mod:`common.delivery.destinations`) on create and on update. ``{endpoint_id}`` in
a path is the endpoint's id or its ``uid`` (the sender's own id, unique per
application). Custom ``headers`` are sent with every delivery and shown only to a
key of the application itself; every other reader (admin keys included) sees
their names with masked values (:mod:`common.delivery.custom_headers`).

An ``operational`` endpoint gets Jenga's operational events about the application's
other endpoints instead of the sender's messages (:mod:`common.delivery.operational`);
the endpoints of ``app_operations`` are all operational and get every application's.

Every call needs a key that may read the application (writes: one that may
write it); see :mod:`api.tenancy`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from api.auth import authenticate
from api.errors import ApiError, error_responses
from api.jobs import JOB_ERRORS, JobOut, start
from api.messages import SEND_ERRORS, MessageIn, MessageOut, create_message, database_now
from api.pagination import ITERATOR, Keyset, page, page_size, split
from api.search import MessageSearch, message_search
from api.tenancy import APP_ERRORS, WRITE_ERRORS, current_app, db_session
from common.access.audit import ENDPOINT_DELETED, ENDPOINT_SECRET_ROTATED, record
from common.access.scopes import Principal
from common.delivery import pausing
from common.delivery.custom_headers import header_problems, masked
from common.delivery.destinations import DestinationError, resolve_destination
from common.delivery.event_types import MESSAGE_TYPE_PATTERN, NAME_PATTERN
from common.delivery.fan_out import CHANNEL_PATTERN, MAX_CHANNELS
from common.delivery.models import (
    MESSAGE_STATUSES,
    OPERATIONS_APP_ID,
    RECOVER,
    App,
    Delivery,
    Endpoint,
    EventType,
)
from common.delivery.operational import OPERATIONAL_EVENT_TYPES, disabled_through_api
from common.delivery.rate_slots import MAX_RATE_LIMIT
from common.delivery.signing import checked_secret, generate_secret
from common.delivery.urls import normalise_url

# Mounted twice (api/app.py): under /v1/apps/{app}/endpoints and as /v1/endpoints.
router = APIRouter(tags=["endpoints"], responses=APP_ERRORS)


# Documented as a URI; checked by checked_url() (the SSRF policy), not by the model.
WebhookUrl = Annotated[
    str, Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri"})
]


Uid = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="The sender's own id for this endpoint; unique in its application.",
    ),
]
Metadata = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(max_length=1000)]
    ],
    Field(max_length=50, description="Strings for the sender's own use (at most 50)."),
]
Headers = Annotated[
    dict[str, str],
    Field(
        max_length=20,
        description="Sent with every delivery (e.g. `Authorization`); not `webhook-*`, `host`,"
        " `content-type`, `content-length`, `connection`, `transfer-encoding` and the like.",
    ),
]
FilterTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200, pattern=MESSAGE_TYPE_PATTERN)]],
    Field(
        max_length=100,
        description="The event types it gets; empty or null: every type. With"
        " EVENT_TYPES_STRICT each must be in the catalog.",
    ),
]
Channels = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=128, pattern=CHANNEL_PATTERN)]],
    Field(
        max_length=MAX_CHANNELS,
        description="Only messages on one of these channels; empty or null: no channel filter.",
    ),
]
RateLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_RATE_LIMIT,
        description=(
            "Deliveries a second its receiver gets at most, fleet-wide (a tenth of a second's"
            " worth, at least 1, may go at once); a backlog is sent in order at this rate."
        ),
    ),
]
SECRET_DESCRIPTION = "`whsec_` + base64 of 24 to 64 bytes; generated when not given."
MAX_GRACE_SECONDS = 7 * 24 * 3600


def _checked_headers(headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers is not None and (problems := header_problems(headers)):
        raise ValueError("; ".join(problems))
    return headers


def _checked_secret(secret: str | None) -> str | None:
    return None if secret is None else checked_secret(secret)


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="http(s) URL that receives the webhooks.")
    description: str = Field(default="", max_length=1000, description="Free text for people.")
    uid: Uid | None = None
    metadata: Metadata = Field(default_factory=dict)
    headers: Headers = Field(default_factory=dict)
    filter_types: FilterTypes | None = None
    channels: Channels | None = None
    rate_limit: RateLimit | None = None
    secret: str | None = Field(default=None, max_length=200, description=SECRET_DESCRIPTION)
    operational: bool | None = Field(
        default=None,
        description="It gets Jenga's operational events about this application's other"
        " endpoints (`filter_types` among them), not messages; fixed at creation. Default:"
        " true in `app_operations` (whose endpoints get every application's), else false.",
    )

    _headers = field_validator("headers")(_checked_headers)
    _secret = field_validator("secret")(_checked_secret)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=1000)
    uid: Uid | None = Field(default=None, description="`null` clears it.")
    metadata: Metadata | None = Field(default=None, description="Replaces the whole map.")
    headers: Headers | None = Field(default=None, description="Replaces every custom header.")
    filter_types: FilterTypes | None = Field(
        default=None, description="`[]` or `null`: every type."
    )
    channels: Channels | None = Field(default=None, description="`[]` or `null`: no filter.")
    rate_limit: RateLimit | None = Field(default=None, description="`null`: no limit.")

    _headers = field_validator("headers")(_checked_headers)


class EndpointOut(BaseModel):
    id: str
    uid: str | None
    url: str
    description: str
    metadata: dict[str, str]
    headers: dict[str, str] = Field(
        description="Values are `********` unless the key is one of this application's own."
    )
    filter_types: list[str] | None = Field(description="null: every event type.")
    channels: list[str] | None = Field(description="null: messages of any channel or none.")
    rate_limit: int | None = Field(description="Deliveries a second at most; null: no limit.")
    operational: bool = Field(description="It gets operational events, not messages.")
    disabled: bool
    disabled_reason: str | None
    paused_at: datetime | None = Field(
        description="Since when it is paused: new deliveries are kept, none attempted."
    )
    failing_since: datetime | None = Field(
        description=(
            "Since when every attempt has failed (null: the last one succeeded);"
            " `ENDPOINT_DISABLE_AFTER_DAYS` of that disables it."
        )
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint, principal: Principal) -> EndpointOut:
        headers = endpoint.headers or {}
        return cls(
            id=endpoint.id,
            uid=endpoint.uid,
            url=endpoint.url,
            description=endpoint.description,
            metadata=endpoint.metadata_map or {},
            headers=headers if principal.owns(endpoint.app_id) else masked(headers),
            filter_types=endpoint.filter_types,
            channels=endpoint.channels,
            rate_limit=endpoint.rate_limit,
            operational=endpoint.operational,
            disabled=endpoint.disabled,
            disabled_reason=endpoint.disabled_reason,
            paused_at=endpoint.paused_at,
            failing_since=endpoint.failing_since,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(default=None, max_length=200, description=SECRET_DESCRIPTION)
    grace_seconds: int = Field(
        default=24 * 3600,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long the replaced secret keeps signing deliveries (at most 7 days).",
    )

    _secret = field_validator("secret")(_checked_secret)


class SecretOut(BaseModel):
    secret: str = Field(description="The current `whsec_…` signing secret.")
    previous_secret_expires_at: datetime | None = Field(
        description="Until when deliveries are also signed with the secret the last rotation"
        " replaced; null when only the current one signs."
    )


class EndpointCreated(EndpointOut):
    secret: str = Field(description="The `whsec_...` signing secret. Shown only now: store it.")


class EndpointList(BaseModel):
    data: list[EndpointOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


def checked_url(request: Request, url: str) -> str:
    """``url`` as it will be sent (IDNA host, percent-encoded path: see
    :mod:`common.delivery.urls`) if webhooks may go there, else a 422 saying why."""
    try:
        url = normalise_url(url)
        resolve_destination(
            url, allow_private=request.app.state.settings.allow_private_destinations
        )
    except DestinationError as error:
        raise ApiError(422, "invalid_url", f"url refused: {error}") from None
    return url


def checked_operational(app: App, operational: bool | None) -> bool:
    """Whether a new endpoint of ``app`` is operational; 422 for one of
    ``app_operations`` that would not be."""
    if app.id != OPERATIONS_APP_ID:
        return bool(operational)
    if operational is False:
        raise ApiError(
            422,
            "invalid_request",
            f"invalid request: operational: the endpoints of {OPERATIONS_APP_ID} get"
            " operational events only",
        )
    return True


def checked_filter_types(
    request: Request, session: Session, types: list[str] | None, operational: bool = False
) -> list[str] | None:
    """The types to store (None for every type): for an operational endpoint, 422 naming
    each that is no operational event; else, with a strict catalog, each not in it."""
    if not types:
        return None
    types = list(dict.fromkeys(types))
    if operational:
        if unknown := [t for t in types if t not in OPERATIONAL_EVENT_TYPES]:
            raise ApiError(
                422,
                "unknown_event_type",
                f"filter_types: {', '.join(map(repr, unknown))} not an operational event"
                f" ({', '.join(OPERATIONAL_EVENT_TYPES)})",
            )
    elif request.app.state.settings.event_types_strict:
        known = set(session.scalars(select(EventType.name).where(EventType.name.in_(types))))
        if unknown := [t for t in types if t not in known]:
            raise ApiError(
                422,
                "unknown_event_type",
                f"filter_types: {', '.join(map(repr, unknown))} not in the catalog"
                " (/v1/event-types) and EVENT_TYPES_STRICT is set",
            )
    return types


def stored_channels(channels: list[str] | None, operational: bool = False) -> list[str] | None:
    if channels and operational:
        raise ApiError(
            422,
            "invalid_request",
            "invalid request: channels: operational events have no channels",
        )
    return list(dict.fromkeys(channels)) if channels else None


def endpoint_or_404(
    session: Session, app: App, endpoint_id: str, *, lock: bool = False
) -> Endpoint:
    """The application's endpoint, by id or uid; another application's answers 404 like
    a missing one."""
    query = select(Endpoint).where(
        or_(Endpoint.id == endpoint_id, Endpoint.uid == endpoint_id), Endpoint.app_id == app.id
    )
    endpoint = session.scalars(query.with_for_update() if lock else query).first()
    if endpoint is None:
        raise ApiError(404, "endpoint_not_found", f"no endpoint {endpoint_id!r}")
    return endpoint


def commit_unique_uid(session: Session, uid: str | None) -> None:
    """Commit; 409 ``uid_taken`` when another endpoint of the application has ``uid``."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(
            409, "uid_taken", f"another endpoint of this application has uid {uid!r}"
        ) from None


UID_ERRORS = {**WRITE_ERRORS, **error_responses(409)}


@router.post("", status_code=201, response_model=EndpointCreated, responses=UID_ERRORS)
def create_endpoint(
    body: EndpointIn,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointCreated:
    """Create an endpoint; the answer carries its signing secret."""
    operational = checked_operational(app, body.operational)
    endpoint = Endpoint(
        app_id=app.id,
        operational=operational,
        url=checked_url(request, body.url),
        description=body.description,
        uid=body.uid,
        metadata_map=body.metadata,
        headers=body.headers,
        filter_types=checked_filter_types(request, session, body.filter_types, operational),
        channels=stored_channels(body.channels, operational),
        rate_limit=body.rate_limit,
        secret=body.secret or generate_secret(),
    )
    session.add(endpoint)
    commit_unique_uid(session, body.uid)
    session.refresh(endpoint)
    return EndpointCreated(
        **EndpointOut.of(endpoint, principal).model_dump(), secret=endpoint.secret
    )


ENDPOINTS = Keyset("endpoints", newest_first=False)


@router.get("", response_model=EndpointList)
def list_endpoints(
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
    limit: int = page_size(500),
    iterator: str | None = ITERATOR,
) -> EndpointList:
    """Oldest first, a page at a time."""
    query = select(Endpoint).where(Endpoint.app_id == app.id)
    query = page(query, ENDPOINTS, Endpoint.created_at, Endpoint.id, iterator, limit)
    rows, next_iterator, done = split(list(session.scalars(query)), limit, ENDPOINTS)
    return EndpointList(
        data=[EndpointOut.of(e, principal) for e in rows], iterator=next_iterator, done=done
    )


@router.get("/{endpoint_id}", response_model=EndpointOut)
def get_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    return EndpointOut.of(endpoint_or_404(session, app, endpoint_id), principal)


@router.patch("/{endpoint_id}", response_model=EndpointOut, responses=UID_ERRORS)
def update_endpoint(
    endpoint_id: str,
    body: EndpointUpdate,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    """Change what is given; `metadata`, `headers`, `filter_types` and `channels` replace
    the whole value."""
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    if body.url is not None:
        endpoint.url = checked_url(request, body.url)
    if body.description is not None:
        endpoint.description = body.description
    if "uid" in body.model_fields_set:
        endpoint.uid = body.uid
    if body.metadata is not None:
        endpoint.metadata_map = body.metadata
    if body.headers is not None:
        endpoint.headers = body.headers
    if "filter_types" in body.model_fields_set:
        endpoint.filter_types = checked_filter_types(
            request, session, body.filter_types, endpoint.operational
        )
    if "channels" in body.model_fields_set:
        endpoint.channels = stored_channels(body.channels, endpoint.operational)
    if "rate_limit" in body.model_fields_set:
        endpoint.rate_limit = body.rate_limit
    commit_unique_uid(session, body.uid)
    session.refresh(endpoint)
    return EndpointOut.of(endpoint, principal)


@router.get("/{endpoint_id}/secret", response_model=SecretOut, responses=WRITE_ERRORS)
def get_secret(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> SecretOut:
    """The current signing secret, for a key that may write the application."""
    if not principal.may_write(app.id):
        raise HTTPException(status_code=403, detail="this key may only read this application")
    endpoint = endpoint_or_404(session, app, endpoint_id)
    return SecretOut(
        secret=endpoint.secret,
        previous_secret_expires_at=_live_expiry(session, endpoint),
    )


@router.post("/{endpoint_id}/secret/rotate", response_model=SecretOut, responses=WRITE_ERRORS)
def rotate_secret(
    endpoint_id: str,
    body: RotateIn,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> SecretOut:
    """Sign with a new secret from now on (the given one, or a generated one); the
    replaced one keeps signing too for `grace_seconds`. Rotating again during a grace
    keeps the two newest: the current one becomes the previous one."""
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    now = database_now(session)
    endpoint.previous_secret = endpoint.secret if body.grace_seconds else None
    endpoint.previous_secret_expires_at = (
        now + timedelta(seconds=body.grace_seconds) if body.grace_seconds else None
    )
    endpoint.secret = body.secret or generate_secret()
    record(
        session,
        principal.name,
        ENDPOINT_SECRET_ROTATED,
        endpoint.id,
        {"app": app.id, "grace_seconds": body.grace_seconds},
    )
    session.commit()
    return SecretOut(
        secret=endpoint.secret, previous_secret_expires_at=endpoint.previous_secret_expires_at
    )


def _live_expiry(session: Session, endpoint: Endpoint) -> datetime | None:
    expires = endpoint.previous_secret_expires_at
    return expires if expires is not None and expires > database_now(session) else None


class ExampleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_type: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)


def example_payload(session: Session, event_type: str) -> object:
    """The first of the type's schema's ``examples``, else a payload that says what it is."""
    row = session.get(EventType, event_type)
    examples = (row.schema or {}).get("examples") if row is not None else None
    if isinstance(examples, list) and examples:
        return examples[0]
    return {"example": True, "event_type": event_type}


@router.post(
    "/{endpoint_id}/send-example",
    status_code=202,
    response_model=MessageOut,
    responses=SEND_ERRORS,
)
def send_example(
    endpoint_id: str,
    body: ExampleIn,
    request: Request,
    response: Response,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
) -> MessageOut:
    """Send a signed example of ``event_type`` to this endpoint (the first of its schema's
    ``examples`` as the payload, if it has any): a message like any other, recorded and
    retried, so the receiver can test its verification."""
    endpoint = endpoint_or_404(session, app, endpoint_id)
    example = MessageIn(
        endpoint_id=endpoint.id,
        event_type=body.event_type,
        payload=example_payload(session, body.event_type),
    )
    return create_message(example, request, response, session, app, None)


class EndpointMessageOut(BaseModel):
    """A message as one endpoint got it: the message and its delivery there."""

    id: str = Field(description="The message's id (its `webhook-id`).")
    delivery_id: str
    event_type: str
    channels: list[str] | None
    payload: JsonValue
    status: str = Field(description="This delivery's: `pending`, `delivered` or `failed`.")
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    expunged_at: datetime | None


class EndpointMessageList(BaseModel):
    data: list[EndpointMessageOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


ENDPOINT_MESSAGES = Keyset("endpoint-messages", newest_first=True)


@router.get("/{endpoint_id}/messages", response_model=EndpointMessageList)
def list_endpoint_messages(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    status: Literal[MESSAGE_STATUSES] | None = Query(
        default=None, description="Only deliveries in this state."
    ),
    search: MessageSearch = Depends(message_search),
    limit: int = page_size(1000),
    iterator: str | None = ITERATOR,
) -> EndpointMessageList:
    """What this endpoint was sent, newest first, with its delivery's state; the filters
    given all apply (`since`/`until`: the delivery's `created_at`, its message's)."""
    endpoint = endpoint_or_404(session, app, endpoint_id)
    query = search.on_deliveries(
        select(Delivery).where(Delivery.endpoint_id == endpoint.id), app.id
    )
    if status:
        query = query.where(Delivery.status == status)
    query = page(query, ENDPOINT_MESSAGES, Delivery.created_at, Delivery.id, iterator, limit)
    rows, next_iterator, done = split(
        list(session.scalars(query.options(joinedload(Delivery.message)))), limit, ENDPOINT_MESSAGES
    )
    return EndpointMessageList(
        data=[
            EndpointMessageOut(
                id=d.message.id,
                delivery_id=d.id,
                event_type=d.message.event_type,
                channels=d.message.channels,
                payload=d.message.payload,
                status=d.status,
                attempt_count=d.attempt_count,
                next_attempt_at=d.next_attempt_at,
                last_error=d.last_error,
                created_at=d.created_at,
                delivered_at=d.delivered_at,
                expunged_at=d.message.expunged_at,
            )
            for d in rows
        ],
        iterator=next_iterator,
        done=done,
    )


def _set_disabled(
    endpoint_id: str, session: Session, app: App, principal: Principal, disabled: bool
) -> EndpointOut:
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    told = disabled and not endpoint.disabled  # endpoint.disabled, in the same transaction
    endpoint.disabled = disabled
    endpoint.disabled_reason = "disabled through the API" if disabled else None
    if not disabled:
        # Enabled again: the count of failures starts afresh, and so does their telling.
        endpoint.failing_since = None
        endpoint.failing_notified_at = None
    if told and (event := disabled_through_api(endpoint, database_now(session))):
        session.add(event)
    session.commit()
    session.refresh(endpoint)
    return EndpointOut.of(endpoint, principal)


@router.post("/{endpoint_id}/disable", response_model=EndpointOut, responses=WRITE_ERRORS)
def disable_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    """Stop deliveries: messages naming it are refused (409), it gets no fan-out, and
    its pending deliveries end `failed`; the operational endpoints are told
    (`endpoint.disabled`, trigger `manual`)."""
    return _set_disabled(endpoint_id, session, app, principal, True)


@router.post("/{endpoint_id}/enable", response_model=EndpointOut, responses=WRITE_ERRORS)
def enable_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    return _set_disabled(endpoint_id, session, app, principal, False)


@router.post("/{endpoint_id}/pause", response_model=EndpointOut, responses=UID_ERRORS)
def pause_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    """Keep every delivery (new ones too) without attempting any, until resumed; nothing
    is failed, unlike disable. An attempt in flight finishes. 409 `endpoint_disabled`: a
    disabled endpoint has nothing to keep (enable it first)."""
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    if endpoint.disabled:
        raise ApiError(
            409,
            "endpoint_disabled",
            f"endpoint {endpoint.id} is disabled: it gets nothing to keep; enable it first",
        )
    pausing.hold(session, endpoint.id)
    session.commit()
    session.refresh(endpoint)
    return EndpointOut.of(endpoint, principal)


@router.post("/{endpoint_id}/resume", response_model=EndpointOut, responses=WRITE_ERRORS)
def resume_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> EndpointOut:
    """Deliver what was kept, in order of creation; the pause does not count against any
    message's retry schedule."""
    endpoint = endpoint_or_404(session, app, endpoint_id, lock=True)
    pausing.release(session, endpoint.id)
    session.commit()
    session.refresh(endpoint)
    return EndpointOut.of(endpoint, principal)


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(
        description="RFC 3339. Deliveries created at or after this; no older than the"
        " retention (MESSAGE_RETENTION_DAYS)."
    )
    until: AwareDatetime | None = Field(
        default=None, description="RFC 3339. Created before this; default (and at most): now."
    )


@router.post("/{endpoint_id}/recover", status_code=202, response_model=JobOut, responses=JOB_ERRORS)
def recover_endpoint(
    endpoint_id: str,
    body: RecoverIn,
    request: Request,
    response: Response,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    idempotency_key: str | None = Header(default=None, max_length=255),
) -> JobOut:
    """Send again, in the background, every delivery to this endpoint that `failed`
    and was created in the window: a job (202), followed at `GET …/jobs/{id}`. The
    deliveries become due at `RECOVER_RATE_PER_SECOND` (shared by running jobs), each
    with a fresh retry schedule; a paused endpoint's wait until it resumes. 409
    `endpoint_disabled`: enable it first."""
    return start(
        request,
        response,
        session,
        app,
        kind=RECOVER,
        now=database_now(session),
        since=body.since,
        until=body.until,
        endpoint=endpoint_or_404(session, app, endpoint_id),
        idempotency_key=idempotency_key,
    )


@router.delete("/{endpoint_id}", status_code=204, responses=WRITE_ERRORS)
def delete_endpoint(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> Response:
    """Delete the endpoint with its messages and their attempts."""
    session.delete(endpoint_or_404(session, app, endpoint_id))
    record(session, principal.name, ENDPOINT_DELETED, endpoint_id, {"app": app.id})
    session.commit()
    return Response(status_code=204)
