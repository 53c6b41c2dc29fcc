"""``/v1/apps/{app}/messages`` (and ``/v1/messages``, the default application's,
for one release): accept events for delivery, and show how delivery went.

``POST /v1/messages`` answers 202 only after the message and its deliveries (one
per subscribed endpoint: :mod:`common.delivery.fan_out`) are committed in
PostgreSQL (the transactional outbox); then a delivery task is enqueued for each (past
``FAN_OUT_DIRECT_MAX`` deliveries, one fan-out task that a worker turns into those).
If the broker is down at that moment the message still counts as accepted: the
beat dispatcher enqueues its deliveries later (``worker/delivery/tasks.py``). If PostgreSQL is
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
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from psycopg.types.json import Jsonb
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import Select, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from api.auth import authenticate
from api.errors import ApiError, error_responses
from api.event_types import checked_payload
from api.jobs import JOB_ERRORS, JobOut, start
from api.pagination import ITERATOR, Keyset, page, page_size, split
from api.search import MessageSearch, message_search
from api.tenancy import APP_ERRORS, WRITE_ERRORS, current_app, db_session, find_app, sending_app
from common.access.audit import MESSAGE_CONTENT_EXPUNGED, record
from common.access.scopes import Principal
from common.broker import (
    DELIVER_TASK,
    FAN_OUT_DIRECT_MAX,
    FAN_OUT_TASK,
    publisher,
    queue_names,
)
from common.config import Settings
from common.connections.probes import describe_error
from common.delivery.envelope import body_parts, sql_iso_timestamp
from common.delivery.event_types import MESSAGE_TYPE_PATTERN
from common.delivery.fan_out import CHANNEL_PATTERN, FAN_OUT, MAX_CHANNELS, summary
from common.delivery.models import (
    EXPUNGED_ON_REQUEST,
    FAILED,
    MESSAGE_STATUSES,
    OPERATIONS_APP_ID,
    PENDING,
    RETRY,
    UNROUTED,
    App,
    Attempt,
    Delivery,
    Endpoint,
    EventType,
    Message,
    new_id,
)
from common.support.logs import log_event

log = logging.getLogger("jenga.api")
# Mounted twice (api/app.py): under /v1/apps/{app}/messages and as /v1/messages.
router = APIRouter(tags=["messages"], responses=APP_ERRORS)
# 409: the endpoint is disabled.
SEND_ERRORS = {**WRITE_ERRORS, **error_responses(409)}


async def startup(app: FastAPI) -> None:
    # Gives up at once when the broker is down: the dispatcher re-sends.
    # Confirmed by RabbitMQ: a delivery the broker did not take is left to the dispatcher's
    # next run at once (see enqueue), not after DELIVERY_REDISPATCH_SECONDS.
    settings = app.state.settings
    app.state.delivery_sender = publisher(
        settings, "jenga-api", confirm=settings.broker_confirm_publish
    )


async def shutdown(app: FastAPI) -> None:
    app.state.delivery_sender.close()


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="Send to this endpoint only. Without it the message goes to every"
        " enabled endpoint of the application subscribed to its type and channels.",
    )
    event_type: str = Field(
        min_length=1,
        max_length=200,
        pattern=MESSAGE_TYPE_PATTERN,
        description="e.g. `invoice.paid`",
    )
    channels: (
        list[Annotated[str, Field(min_length=1, max_length=128, pattern=CHANNEL_PATTERN)]] | None
    ) = Field(
        default=None,
        max_length=MAX_CHANNELS,
        description="Endpoints with `channels` get the message only if one of them is here.",
    )
    payload: JsonValue = Field(description="Any JSON; sent as `data` in the webhook body.")


class AttemptOut(BaseModel):
    """One try at sending a message to an endpoint."""

    delivery_id: str
    message_id: str
    endpoint_id: str
    number: int = Field(description="1 for its delivery's first attempt, then 2, 3...")
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None = Field(description="Error class and message when there was no HTTP answer.")
    response_excerpt: str | None = Field(
        description="The first 500 characters of the answer; null once expunged."
    )

    @classmethod
    def of(cls, attempt: Attempt, message_id: str, endpoint_id: str) -> AttemptOut:
        return cls(
            delivery_id=attempt.delivery_id,
            message_id=message_id,
            endpoint_id=endpoint_id,
            number=attempt.number,
            started_at=attempt.started_at,
            duration_ms=attempt.duration_ms,
            status_code=attempt.status_code,
            error=attempt.error,
            response_excerpt=attempt.response_excerpt,
        )


class DeliveryOut(BaseModel):
    """Sending the message to one endpoint."""

    id: str
    endpoint_id: str
    status: str = Field(description="`pending`, `delivered` or `failed`.")
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return cls(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            status=delivery.status,
            attempt_count=delivery.attempt_count,
            next_attempt_at=delivery.next_attempt_at,
            last_error=delivery.last_error,
            delivered_at=delivery.delivered_at,
        )


class MessageOut(BaseModel):
    id: str = Field(description="Also the `webhook-id` every endpoint receives.")
    endpoint_id: str | None = Field(description="The one endpoint it was sent to, if named.")
    event_type: str
    channels: list[str] | None
    payload: JsonValue
    status: str = Field(
        description="`pending` while any delivery is, else `failed` if any failed, else"
        " `delivered`; `unrouted` when no endpoint was subscribed."
    )
    attempt_count: int = Field(description="Attempts of all its deliveries.")
    next_attempt_at: datetime | None = Field(description="The soonest of its deliveries'.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None = Field(description="When the last delivery succeeded.")
    expunged_at: datetime | None = Field(
        description="When the content (payload, response excerpts) was removed; then"
        " `payload` is null."
    )
    expunge_reason: str | None = Field(
        description="`retention` (MESSAGE_RETENTION_DAYS) or `request` (DELETE …/content)."
    )
    deliveries: list[DeliveryOut] = Field(description="One per endpoint it goes to.")

    @classmethod
    def of(cls, message: Message, **extra: Any) -> MessageOut:
        state = summary(message.deliveries)
        return cls(
            id=message.id,
            endpoint_id=message.endpoint_id,
            event_type=message.event_type,
            channels=message.channels,
            payload=message.payload,
            status=state.status,
            attempt_count=state.attempt_count,
            next_attempt_at=state.next_attempt_at,
            last_error=state.last_error,
            created_at=message.created_at,
            delivered_at=state.delivered_at,
            expunged_at=message.expunged_at,
            expunge_reason=message.expunge_reason,
            deliveries=[DeliveryOut.of(d) for d in message.deliveries],
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
    fields = body.model_dump(mode="json")
    if fields["channels"] is None:
        del fields["channels"]  # as before channels existed: keys stored then still match
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
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


# The message and its deliveries (FAN_OUT) in one statement, one round trip: dated by
# the transaction's now() (PostgreSQL's clock, as the worker compares them), the body
# stamped with it. One row per delivery, or one with no delivery (id NULL) when no
# endpoint is subscribed; created_at is the message's on every row.
ACCEPT = f"""
    WITH message AS (
        INSERT INTO webhook_messages (id, app_id, endpoint_id, event_type, channels, payload,
                                      body, idempotency_key, request_hash, created_at)
        VALUES (%(message_id)s, %(app_id)s, %(endpoint_id)s, %(event_type)s,
                %(channels_json)s, CAST(%(payload)s AS jsonb),
                %(body_head)s || {sql_iso_timestamp("now()")} || %(body_tail)s,
                %(idempotency_key)s, %(request_hash)s, now())
        RETURNING created_at
    ), deliveries AS ({FAN_OUT})
    SELECT message.created_at, deliveries.id, deliveries.endpoint_id,
           deliveries.next_attempt_at, coalesce(deliveries.due, false) AS due
    FROM message LEFT JOIN deliveries ON true
    """


def enqueue(
    request: Request, delivery_ids: list[str], message_id: str, role: str = "deliveries"
) -> None:
    """Best effort: a delivery that could not be enqueued now is dispatched by beat. More
    than ``FAN_OUT_DIRECT_MAX`` deliveries of the sender's go as one fan-out task for the
    message, which a worker turns into one task per delivery. ``role``: the queue's
    (``operational`` for an operational webhook's deliveries)."""
    settings: Settings = request.app.state.settings
    queue = queue_names(settings.jenga_namespace)[role]
    sender = request.app.state.delivery_sender
    # A broker that stopped answering must not hold the request: the write, and on
    # RabbitMQ the wait for its confirm, end after CHECK_TIMEOUT_SECONDS.
    bounds = {
        "timeout": settings.check_timeout_seconds,
        "confirm_timeout": settings.check_timeout_seconds,
    }
    sent = 0
    try:
        if role == "deliveries" and len(delivery_ids) > FAN_OUT_DIRECT_MAX:
            sender.send_task(FAN_OUT_TASK, args=(message_id,), queue=queue, retry=False, **bounds)
            return
        for delivery_id in delivery_ids:
            sender.send_task(DELIVER_TASK, args=(delivery_id,), queue=queue, retry=False, **bounds)
            sent += 1
    except Exception as error:
        log_event(
            log,
            "api.enqueue_deferred",
            logging.WARNING,
            delivery_id=delivery_ids[sent],
            unsent=len(delivery_ids) - sent,
            error=describe_error(error),
        )
        # Let the next dispatcher run take them, instead of waiting out
        # DELIVERY_REDISPATCH_SECONDS.
        try:
            with Session(request.app.state.engine) as session, session.begin():
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(delivery_ids[sent:]))
                    .values(dispatched_at=None)
                )
        except Exception as reset_error:  # the redispatch timeout still covers it
            log_event(
                log,
                "api.enqueue_reset_failed",
                logging.WARNING,
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
    app: App = Depends(sending_app),
    idempotency_key: str | None = Header(default=None, max_length=255),
) -> MessageOut:
    """Accept a message for delivery (202 once it is stored)."""
    settings: Settings = request.app.state.settings
    if app.id == OPERATIONS_APP_ID:
        raise ApiError(
            422,
            "operations_app",
            f"{OPERATIONS_APP_ID} gets only Jenga's operational events; send messages to"
            " another application",
        )
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
    if body.endpoint_id is not None:
        endpoint = session.get(Endpoint, body.endpoint_id)
        if endpoint is None or endpoint.app_id != app.id:
            raise ApiError(422, "unknown_endpoint", f"no endpoint {body.endpoint_id!r}")
        if endpoint.operational:
            raise ApiError(
                422,
                "operational_endpoint",
                f"endpoint {endpoint.id} is operational: it gets Jenga's operational events,"
                " not messages",
            )
        if endpoint.disabled:
            raise ApiError(
                409, "endpoint_disabled", f"endpoint {endpoint.id} is disabled; enable it first"
            )
    head, tail = body_parts(body.event_type, payload_json)
    message_id = new_id("msg")
    try:
        rows = (
            session.connection()
            .exec_driver_sql(
                ACCEPT,
                {
                    "message_id": message_id,
                    "app_id": app.id,
                    "endpoint_id": body.endpoint_id,
                    "event_type": body.event_type,
                    "channels_json": None if body.channels is None else Jsonb(body.channels),
                    "channels": body.channels or [],
                    "payload": payload_json,
                    "body_head": head,
                    "body_tail": tail,
                    "idempotency_key": idempotency_key,
                    "request_hash": digest,
                    "operational": False,
                },
            )
            .all()
        )
        session.commit()
    except IntegrityError:
        # The same Idempotency-Key committed concurrently: answer with that one.
        session.rollback()
        existing = _replay(session, app, idempotency_key, digest) if idempotency_key else None
        if existing is None:
            # The other constraints: the application (cached: api/tenancy.py) or the
            # endpoint was deleted meanwhile.
            if find_app(session, app.id) is None:
                request.app.state.app_cache.clear()
                raise ApiError(404, "app_not_found", f"no application {app.id!r}") from None
            raise ApiError(422, "unknown_endpoint", f"no endpoint {body.endpoint_id!r}") from None
        response.headers["Idempotent-Replayed"] = "true"
        return MessageOut.of(existing)
    message = Message(
        id=message_id,
        app_id=app.id,
        endpoint_id=body.endpoint_id,
        event_type=body.event_type,
        channels=body.channels,
        payload=body.payload,
        created_at=rows[0].created_at,
        deliveries=[
            Delivery(
                id=row.id,
                endpoint_id=row.endpoint_id,
                status=PENDING,
                attempt_count=0,
                next_attempt_at=row.next_attempt_at,
            )
            for row in rows
            if row.id is not None
        ],
    )
    due = [row.id for row in rows if row.due]
    enqueue(request, due, message_id)  # a paused endpoint's delivery waits until it resumes
    return MessageOut.of(message)


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["failed"] = Field(description="Only `failed` deliveries are retried in bulk.")
    event_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=MESSAGE_TYPE_PATTERN,
        description="Of messages of this type only.",
    )
    endpoint_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="To this endpoint only (id or uid); without it, to every enabled one.",
    )
    since: AwareDatetime | None = Field(
        default=None,
        description="RFC 3339. Created at or after this; default: as far back as the"
        " retention keeps (MESSAGE_RETENTION_DAYS).",
    )
    until: AwareDatetime | None = Field(
        default=None, description="RFC 3339. Created before this; default (and at most): now."
    )


@router.post("/retry", status_code=202, response_model=JobOut, responses=JOB_ERRORS)
def retry_failed(
    body: RetryIn,
    request: Request,
    response: Response,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    idempotency_key: str | None = Header(default=None, max_length=255),
) -> JobOut:
    """Send again, in the background, every failed delivery the filter names: a job
    (202), followed at `GET …/jobs/{id}`, paced as `POST …/endpoints/{ep}/recover`."""
    endpoint = None
    if body.endpoint_id is not None:
        endpoint = session.scalars(
            select(Endpoint).where(
                or_(Endpoint.id == body.endpoint_id, Endpoint.uid == body.endpoint_id),
                Endpoint.app_id == app.id,
            )
        ).first()
        if endpoint is None:
            raise ApiError(
                422, "unknown_endpoint", f"endpoint_id: no endpoint {body.endpoint_id!r}"
            )
    strict = request.app.state.settings.event_types_strict
    if body.event_type and strict and session.get(EventType, body.event_type) is None:
        raise ApiError(
            422,
            "unknown_event_type",
            f"event_type: {body.event_type!r} is not in the catalog (/v1/event-types)"
            " and EVENT_TYPES_STRICT is set",
        )
    return start(
        request,
        response,
        session,
        app,
        kind=RETRY,
        now=database_now(session),
        since=body.since,
        until=body.until,
        endpoint=endpoint,
        event_type=body.event_type,
        idempotency_key=idempotency_key,
    )


def with_deliveries(query: Select) -> Select:
    return query.options(selectinload(Message.deliveries))


MESSAGES = Keyset("messages", newest_first=True)
MessageStatus = Literal[(*MESSAGE_STATUSES, UNROUTED)]


@router.get("", response_model=MessageList)
def list_messages(
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    endpoint_id: str | None = Query(
        default=None, description="Only messages with a delivery to this endpoint."
    ),
    status: MessageStatus | None = Query(
        default=None,
        description="Only messages with a delivery in this state (`unrouted`: with none).",
    ),
    search: MessageSearch = Depends(message_search),
    limit: int = page_size(1000),
    iterator: str | None = ITERATOR,
) -> MessageList:
    """Newest first, a page at a time; the filters given all apply (each through an
    index)."""
    query = search.on_messages(select(Message).where(Message.app_id == app.id))
    if status == UNROUTED:
        query = query.where(~exists().where(Delivery.message_id == Message.id))
    elif endpoint_id or status:
        delivery = select(Delivery.id).where(Delivery.message_id == Message.id)
        if endpoint_id:
            delivery = delivery.where(Delivery.endpoint_id == endpoint_id)
        if status:
            delivery = delivery.where(Delivery.status == status)
        query = query.where(delivery.exists())
    query = page(query, MESSAGES, Message.created_at, Message.id, iterator, limit)
    rows, next_iterator, done = split(
        list(session.scalars(with_deliveries(query))), limit, MESSAGES
    )
    return MessageList(data=[MessageOut.of(m) for m in rows], iterator=next_iterator, done=done)


def message_or_404(session: Session, app: App, message_id: str) -> Message:
    """The application's message; another application's answers 404 like a missing one."""
    message = session.scalars(
        select(Message)
        .where(Message.id == message_id, Message.app_id == app.id)
        .options(selectinload(Message.deliveries).selectinload(Delivery.attempts))
    ).first()
    if message is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    return message


def detail(message: Message) -> MessageDetail:
    attempts = [
        AttemptOut.of(a, message.id, d.endpoint_id) for d in message.deliveries for a in d.attempts
    ]
    return MessageDetail.of(message, attempts=attempts)


@router.get("/{message_id}", response_model=MessageDetail)
def get_message(
    message_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> MessageDetail:
    """The message, each endpoint's delivery of it and every attempt."""
    return detail(message_or_404(session, app, message_id))


def locked_message(session: Session, app: App, message_id: str) -> Message:
    message = session.scalars(
        select(Message).where(Message.id == message_id, Message.app_id == app.id).with_for_update()
    ).first()
    if message is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    return message


RETRY_ERRORS = {**SEND_ERRORS, **error_responses(404)}


@router.post(
    "/{message_id}/retry", status_code=202, response_model=MessageOut, responses=RETRY_ERRORS
)
def retry_message(
    message_id: str,
    request: Request,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    endpoint_id: str | None = Query(
        default=None, description="Retry only the delivery to this endpoint."
    ),
) -> MessageOut:
    """Deliver again now, with a fresh retry schedule (also after `delivered` or
    `failed`): every delivery of the message to an enabled endpoint, or only the one to
    `endpoint_id`."""
    message = locked_message(session, app, message_id)
    if message.expunged_at is not None:
        raise ApiError(409, "message_expunged", f"message {message_id}'s content was expunged")
    query = (
        select(Delivery, Endpoint.disabled, Endpoint.operational)
        .join(Endpoint, Endpoint.id == Delivery.endpoint_id)
        .where(Delivery.message_id == message.id)
        .order_by(Delivery.created_at, Delivery.id)
        .with_for_update(of=Delivery)
    )
    if endpoint_id is not None:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    rows = session.execute(query).all()
    if endpoint_id is not None and not rows:
        raise ApiError(
            404, "delivery_not_found", f"message {message_id} was not sent to {endpoint_id!r}"
        )
    if not rows:
        raise ApiError(409, "message_unrouted", f"message {message_id} went to no endpoint")
    live = [delivery for delivery, disabled, _ in rows if not disabled]
    # An operational webhook's deliveries (all of its endpoints are operational) go on
    # their own queue.
    role = "operational" if any(operational for *_, operational in rows) else "deliveries"
    if not live:
        raise ApiError(
            409,
            "endpoint_disabled",
            "every endpoint of this message is disabled; enable one first",
        )
    now = database_now(session)
    due = []
    for delivery in live:
        if delivery.claimed_until is not None and delivery.claimed_until > now:
            # A worker is attempting it: that attempt's record would undo a retry made
            # here, so it applies the retry instead (a new round, at once).
            delivery.retry_requested = True
            continue
        delivery.status = PENDING
        delivery.schedule_position = 0
        delivery.give_up_at = None  # a new round: its deadline starts at the next claim
        delivery.next_attempt_at = now
        delivery.dispatched_at = now
        due.append(delivery.id)
    session.commit()
    enqueue(request, due, message.id, role)
    return MessageOut.of(message)


@router.delete("/{message_id}/content", status_code=204, responses=WRITE_ERRORS)
def expunge_content(
    message_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    principal: Principal = Depends(authenticate),
) -> Response:
    """Remove the message's content now (payload, body, the receivers' response
    excerpts), for a privacy request; its deliveries' status and attempt log stay. A
    delivery not yet made ends `failed`, and an attempt in flight is not recorded.
    Idempotent."""
    message = locked_message(session, app, message_id)
    if message.expunged_at is None:
        message.payload, message.body = None, ""
        message.expunged_at, message.expunge_reason = database_now(session), EXPUNGED_ON_REQUEST
        deliveries = select(Delivery.id).where(Delivery.message_id == message.id)
        session.execute(
            update(Delivery)
            .where(Delivery.message_id == message.id, Delivery.status == PENDING)
            .values(
                status=FAILED,
                last_error="content expunged before delivery",
                next_attempt_at=None,
                dispatched_at=None,
            )
        )
        # A worker attempting it loses its lease: its record cannot bring it back.
        session.execute(
            update(Delivery)
            .where(Delivery.message_id == message.id)
            .values(claim_token=None, claimed_until=None)
        )
        session.execute(
            update(Attempt).where(Attempt.delivery_id.in_(deliveries)).values(response_excerpt=None)
        )
        record(session, principal.name, MESSAGE_CONTENT_EXPUNGED, message.id, {"app": app.id})
        session.commit()
    return Response(status_code=204)
