"""``/v1/apps/{app}/messages`` (and ``/v1/messages``, the default application's,
for one release): accept events for delivery, and show how delivery went.

``POST /v1/messages`` answers 202 only after the message is committed in
PostgreSQL (the transactional outbox); then a delivery task is enqueued. If
the broker is down at that moment the message still counts as accepted: the
beat dispatcher enqueues it later (``worker/delivery/tasks.py``). If PostgreSQL is
down the answer is 503 with ``Retry-After`` and nothing was accepted.

``Idempotency-Key``: repeating a request with the same key returns the first
message (and delivers nothing more); the same key with a different request is
refused with 422. Keys are the sender's, per application.

Every call needs a key that may read the application (writes: one that may
write it); see :mod:`api.tenancy`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.auth import authenticate
from api.errors import ApiError, error_responses
from api.event_types import checked_payload
from api.pagination import ITERATOR, page, page_size, split
from api.tenancy import APP_ERRORS, WRITE_ERRORS, current_app, db_session
from common.access.audit import MESSAGE_CONTENT_EXPUNGED, record
from common.access.scopes import Principal
from common.broker import DELIVER_TASK, publisher, queue_names
from common.config import Settings
from common.connections.probes import describe_error
from common.delivery.models import (
    EXPUNGED_ON_REQUEST,
    FAILED,
    MESSAGE_STATUSES,
    PENDING,
    App,
    Attempt,
    Endpoint,
    Message,
)
from common.support.logs import log_event

log = logging.getLogger("jenga.api")
# Mounted twice (api/app.py): under /v1/apps/{app}/messages and as /v1/messages.
router = APIRouter(tags=["messages"], responses=APP_ERRORS)
# 409: the endpoint is disabled.
SEND_ERRORS = {**WRITE_ERRORS, **error_responses(409)}


async def startup(app: FastAPI) -> None:
    # Gives up at once when the broker is down: the dispatcher re-sends.
    app.state.delivery_sender = publisher(app.state.settings, "jenga-api")


async def shutdown(app: FastAPI) -> None:
    app.state.delivery_sender.close()


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str = Field(min_length=1, max_length=40)
    event_type: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_.:\-/]+$",
        description="e.g. `invoice.paid`",
    )
    payload: JsonValue = Field(description="Any JSON; sent as `data` in the webhook body.")


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None = Field(description="Error class and message when there was no HTTP answer.")
    response_excerpt: str | None


class MessageOut(BaseModel):
    id: str
    endpoint_id: str
    event_type: str
    payload: JsonValue
    status: str = Field(description="`pending`, `delivered` or `failed`.")
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    expunged_at: datetime | None = Field(
        description="When the content (payload, response excerpts) was removed; then"
        " `payload` is null."
    )
    expunge_reason: str | None = Field(
        description="`retention` (MESSAGE_RETENTION_DAYS) or `request` (DELETE …/content)."
    )

    @classmethod
    def of(cls, message: Message, **extra: Any) -> MessageOut:
        return cls(
            id=message.id,
            endpoint_id=message.endpoint_id,
            event_type=message.event_type,
            payload=message.payload,
            status=message.status,
            attempt_count=message.attempt_count,
            next_attempt_at=message.next_attempt_at,
            last_error=message.last_error,
            created_at=message.created_at,
            delivered_at=message.delivered_at,
            expunged_at=message.expunged_at,
            expunge_reason=message.expunge_reason,
            **extra,
        )


class MessageDetail(MessageOut):
    attempts: list[AttemptOut]


class MessageList(BaseModel):
    data: list[MessageOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


def unstorable_text(value: object) -> str | None:
    """Why PostgreSQL's JSONB (and many receivers) cannot take a string in this
    JSON value, or None: NUL, and lone UTF-16 surrogates (``"\\ud800"``)."""
    if isinstance(value, str):
        if "\x00" in value:
            return "strings may not contain \\u0000 (PostgreSQL's JSONB cannot store it)"
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return "strings must be valid Unicode (found a lone UTF-16 surrogate)"
        return None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((reason for item in items if (reason := unstorable_text(item))), None)


def request_hash(body: MessageIn) -> str:
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, app: App, key: str, digest: str) -> Message | None:
    existing = session.scalars(
        select(Message).where(Message.app_id == app.id, Message.idempotency_key == key)
    ).first()
    if existing is not None and existing.request_hash != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )
    return existing


def database_now(session: Session) -> datetime:
    """The transaction's time as PostgreSQL sees it, in UTC. Every time the worker
    compares with ``now()`` (``next_attempt_at``, ``dispatched_at``) comes from here:
    with this host's clock, a few milliseconds of skew could hold a new message back
    until ``DELIVERY_REDISPATCH_SECONDS``."""
    return session.scalar(select(func.now())).astimezone(UTC)


def enqueue(request: Request, message_id: str) -> None:
    """Best effort: a message that could not be enqueued now is dispatched by beat."""
    settings: Settings = request.app.state.settings
    try:
        request.app.state.delivery_sender.send_task(
            DELIVER_TASK,
            args=(message_id,),
            queue=queue_names(settings.jenga_namespace)["deliveries"],
            retry=False,
        )
    except Exception as error:
        log_event(
            log,
            "api.enqueue_deferred",
            logging.WARNING,
            message_id=message_id,
            error=describe_error(error),
        )
        # Let the next dispatcher run take it, instead of waiting out DELIVERY_REDISPATCH_SECONDS.
        try:
            with Session(request.app.state.engine) as session, session.begin():
                session.execute(
                    update(Message).where(Message.id == message_id).values(dispatched_at=None)
                )
        except Exception as reset_error:  # the redispatch timeout still covers it
            log_event(
                log,
                "api.enqueue_reset_failed",
                logging.WARNING,
                message_id=message_id,
                error=describe_error(reset_error),
            )


@router.post(
    "",
    status_code=202,
    response_model=MessageOut,
    responses=SEND_ERRORS,
)
def create_message(
    body: MessageIn,
    request: Request,
    response: Response,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    idempotency_key: str | None = Header(default=None, max_length=255),
) -> MessageOut:
    """Accept a message for delivery (202 once it is stored)."""
    settings: Settings = request.app.state.settings
    try:
        payload_json = json.dumps(
            body.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError:
        # Python's parser accepts NaN and Infinity; JSON, JSONB and the receivers do not.
        raise ApiError(
            422,
            "invalid_request",
            "invalid request: payload: NaN and Infinity are not JSON numbers",
        ) from None
    refusal = unstorable_text(body.payload)
    if refusal:
        raise ApiError(422, "invalid_request", f"invalid request: payload: {refusal}")
    if len(payload_json.encode()) > settings.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"payload is {len(payload_json.encode())} bytes;"
            f" the limit is {settings.max_payload_bytes} (MAX_PAYLOAD_BYTES)",
        )
    checked_payload(request, session, body.event_type, body.payload)
    digest = request_hash(body)
    if idempotency_key is not None:
        existing = _replay(session, app, idempotency_key, digest)
        if existing is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return MessageOut.of(existing)
    endpoint = session.get(Endpoint, body.endpoint_id)
    if endpoint is None or endpoint.app_id != app.id:
        raise ApiError(422, "unknown_endpoint", f"no endpoint {body.endpoint_id!r}")
    if endpoint.disabled:
        raise ApiError(
            409, "endpoint_disabled", f"endpoint {endpoint.id} is disabled; enable it first"
        )
    now = database_now(session)
    held = (
        endpoint.paused_at is not None
    )  # kept until the endpoint resumes (common/delivery/pausing.py)
    message = Message(
        app_id=app.id,
        endpoint_id=endpoint.id,
        event_type=body.event_type,
        payload=body.payload,
        idempotency_key=idempotency_key,
        request_hash=digest,
        status=PENDING,
        created_at=now,
        next_attempt_at=None if held else now,
        dispatched_at=None if held else now,
    )
    # The Standard Webhooks body, fixed now so that every retry sends (and signs) the same bytes.
    message.body = (
        f'{{"type":{json.dumps(body.event_type)},"timestamp":"{now.isoformat()}",'
        f'"data":{payload_json}}}'
    )
    session.add(message)
    try:
        session.commit()
    except IntegrityError:
        # The same Idempotency-Key committed concurrently: answer with that one.
        session.rollback()
        existing = _replay(session, app, idempotency_key, digest) if idempotency_key else None
        if existing is None:
            # The other constraint a commit can hit: the endpoint was deleted meanwhile.
            raise ApiError(422, "unknown_endpoint", f"no endpoint {body.endpoint_id!r}") from None
        response.headers["Idempotent-Replayed"] = "true"
        return MessageOut.of(existing)
    if not held:
        enqueue(request, message.id)
    return MessageOut.of(message)


@router.get("", response_model=MessageList)
def list_messages(
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    endpoint_id: str | None = None,
    status: str | None = Query(default=None, pattern="^(" + "|".join(MESSAGE_STATUSES) + ")$"),
    limit: int = page_size(1000),
    iterator: str | None = ITERATOR,
) -> MessageList:
    """Newest first, a page at a time."""
    query = select(Message).where(Message.app_id == app.id)
    if endpoint_id:
        query = query.where(Message.endpoint_id == endpoint_id)
    if status:
        query = query.where(Message.status == status)
    rows, next_iterator, done = split(
        list(session.scalars(page(query, Message, iterator, limit, True))), limit
    )
    return MessageList(data=[MessageOut.of(m) for m in rows], iterator=next_iterator, done=done)


def message_or_404(session: Session, app: App, message_id: str) -> Message:
    """The application's message; another application's answers 404 like a missing one."""
    message = session.scalars(
        select(Message)
        .where(Message.id == message_id, Message.app_id == app.id)
        .options(selectinload(Message.attempts))
    ).first()
    if message is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    return message


def detail(message: Message) -> MessageDetail:
    attempts = [
        AttemptOut(
            number=a.number,
            started_at=a.started_at,
            duration_ms=a.duration_ms,
            status_code=a.status_code,
            error=a.error,
            response_excerpt=a.response_excerpt,
        )
        for a in message.attempts
    ]
    return MessageDetail.of(message, attempts=attempts)


@router.get("/{message_id}", response_model=MessageDetail)
def get_message(
    message_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> MessageDetail:
    """The message, its status and every delivery attempt."""
    return detail(message_or_404(session, app, message_id))


@router.post(
    "/{message_id}/retry", status_code=202, response_model=MessageOut, responses=SEND_ERRORS
)
def retry_message(
    message_id: str,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
) -> MessageOut:
    """Deliver again now, with a fresh retry schedule (also after `delivered` or `failed`)."""
    message = session.scalars(
        select(Message).where(Message.id == message_id, Message.app_id == app.id).with_for_update()
    ).first()
    if message is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    if message.expunged_at is not None:
        raise ApiError(409, "message_expunged", f"message {message_id}'s content was expunged")
    endpoint = session.get(Endpoint, message.endpoint_id)
    if endpoint is None or endpoint.disabled:
        raise ApiError(
            409, "endpoint_disabled", f"endpoint {message.endpoint_id} is disabled; enable it first"
        )
    now = database_now(session)
    if message.claimed_until is not None and message.claimed_until > now:
        # A worker is attempting it: that attempt's record would undo a retry made
        # here, so it applies the retry instead (a new round, at once).
        message.retry_requested = True
        session.commit()
        return MessageOut.of(message)
    message.status = PENDING
    message.schedule_position = 0
    message.give_up_at = None  # a new round: its deadline starts at the next claim
    message.next_attempt_at = now
    message.dispatched_at = now
    session.commit()
    enqueue(request, message.id)
    return MessageOut.of(message)


@router.delete("/{message_id}/content", status_code=204, responses=WRITE_ERRORS)
def expunge_content(
    message_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> Response:
    """Remove the message's content now (payload, body, the receivers' response
    excerpts), for a privacy request; its status and attempt log stay. A message not
    yet delivered ends `failed`, and an attempt in flight is not recorded. Idempotent."""
    message = session.scalars(
        select(Message).where(Message.id == message_id, Message.app_id == app.id).with_for_update()
    ).first()
    if message is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    if message.expunged_at is None:
        message.payload, message.body = None, ""
        message.expunged_at, message.expunge_reason = database_now(session), EXPUNGED_ON_REQUEST
        if message.status == PENDING:
            message.status, message.last_error = FAILED, "content expunged before delivery"
            message.next_attempt_at = message.dispatched_at = None
        # A worker attempting it loses its lease: its record cannot bring the message back.
        message.claim_token = message.claimed_until = None
        session.execute(
            update(Attempt).where(Attempt.message_id == message.id).values(response_excerpt=None)
        )
        record(session, principal.name, MESSAGE_CONTENT_EXPUNGED, message.id, {"app": app.id})
        session.commit()
    return Response(status_code=204)
