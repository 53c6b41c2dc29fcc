"""Level 5 tables: applications, webhook endpoints, messages, their deliveries
(one per endpoint a message goes to) and the deliveries' attempts (SQLAlchemy 2
declarative models; the schema itself is made by Alembic).

A message and its deliveries are the transactional outbox: the API commits them
together, and only then is a delivery task enqueued per delivery. Delivery state
lives here, not in the broker:

* ``status``: ``pending`` until a 2xx (``delivered``) or the retry schedule is
  used up (``failed``).
* ``next_attempt_at``: when it is due. Beat enqueues due deliveries (see
  ``worker/delivery/tasks.py``); a retry hours away never waits in the broker.
* ``dispatched_at``: when a task was last enqueued for it. A due delivery whose
  task has not started long after that (broker down at commit, worker lost) is
  enqueued again by the same beat run.
* ``claim_token``/``claimed_until``: the lease of the worker delivering it
  now. A second task for the same delivery finds the lease and does nothing; a
  worker that dies leaves a lease that simply expires.

A job (``webhook_jobs``) re-queues failed deliveries in the background, in
small batches at a bounded pace (``worker/jobs``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# A job (Job): waiting for a worker, being worked on, finished, stopped with an error, or
# stopped by the sender (POST …/jobs/{id}/cancel). Only the first two are unfinished.
JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED = "queued", "running", "done", "failed"
JOB_CANCELLED = "cancelled"
JOB_UNFINISHED = (JOB_QUEUED, JOB_RUNNING)
JOB_STATUSES = (*JOB_UNFINISHED, JOB_DONE, JOB_FAILED, JOB_CANCELLED)
# What a job does: recover one endpoint's failed deliveries, or retry failed ones by filter.
RECOVER, RETRY = "recover", "retry"
EXPUNGED_BY_RETENTION, EXPUNGED_ON_REQUEST = "retention", "request"
MESSAGE_STATUSES = (PENDING, DELIVERED, FAILED)
# A message that no endpoint was subscribed to: it has no deliveries.
UNROUTED = "unrouted"
# A delivery with an attempt that did not succeed (and a few without: a retry asked for
# after a success). The others were delivered at their one attempt, which got a 2xx:
# a delivery is delivered only by a 2xx, and each attempt counts in attempt_count.
HAD_A_FAILED_ATTEMPT = (
    "(webhook_deliveries.attempt_count > 1"
    " OR (webhook_deliveries.status <> 'delivered' AND webhook_deliveries.attempt_count > 0))"
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Base(DeclarativeBase):
    pass


# Backs the routes without an application (/v1/endpoints, /v1/messages), kept for
# one release as aliases; every row written before applications existed is its.
DEFAULT_APP_ID = "app_default"
# Its endpoints (all operational) get the operational events of every application.
OPERATIONS_APP_ID = "app_operations"


class App(Base):
    """An application: one tenant of the sender (its own customer), owning endpoints
    and messages. ``uid`` is the sender's own id for it, usable wherever the id is."""

    __tablename__ = "webhook_apps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("app"))
    uid: Mapped[str | None] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ApiKey(Base):
    """An API key, stored as its hash (``common/access/keys.py``); ``scopes`` as text
    (``admin``, ``app:<id>``, ``app:<id>:read``)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("key"))
    name: Mapped[str] = mapped_column(Text, default="", server_default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EventType(Base):
    """A kind of event the sender sends (``order.paid``), fleet-wide like Svix's: the
    sender's product defines its catalog once for all its applications. ``schema`` (a
    JSON Schema, optional) is checked against every message of the type; ``archived``
    hides it from the catalog (its messages are still accepted); ``deprecated`` marks it
    for receivers to move away from."""

    __tablename__ = "webhook_event_types"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    deprecated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Endpoint(Base):
    """Where one application's webhooks go. ``uid`` is the sender's own id for it (unique
    per application); ``headers`` are sent with every delivery; ``previous_secret`` (the
    one the last rotation replaced) signs deliveries too until its expiry."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_app", "app_id", "created_at", "id"),
        Index("uq_webhook_endpoints_app_uid", "app_id", "uid", unique=True),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ep"))
    app_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_apps.id", ondelete="CASCADE"), server_default=DEFAULT_APP_ID
    )
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    uid: Mapped[str | None] = mapped_column(String(255))
    # "metadata" is SQLAlchemy's own attribute on a model: the column goes by another name here.
    metadata_map: Mapped[dict[str, str]] = mapped_column(
        "metadata", JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    headers: Mapped[dict[str, str]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Paused: its pending messages wait (next_attempt_at NULL), none attempted, none failed.
    paused_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # Its receiver's breaker is open: deliveries wait until then (worker/delivery/queries.py).
    parked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The first failed attempt since the last success (None: healthy, or never tried);
    # failing for ENDPOINT_DISABLE_AFTER_DAYS disables it (worker/delivery/queries.py RECORD).
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When endpoint.failing was sent for the current run of failures (None: not sent);
    # cleared with failing_since by a success, which sends endpoint.recovered.
    failing_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # It receives Jenga's operational events about the application's other endpoints
    # (common/delivery/operational.py), not the sender's messages. Fixed at creation.
    operational: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Subscriptions (common/delivery/fan_out.py): the event types it gets (None: every
    # type) and its channels (None: messages of any channel or none).
    filter_types: Mapped[list[str] | None] = mapped_column(JSONB(none_as_null=True))
    channels: Mapped[list[str] | None] = mapped_column(JSONB(none_as_null=True))
    # Deliveries a second its receiver is promised at most (None: no limit);
    # common/delivery/rate_slots.py spaces them.
    rate_limit: Mapped[int | None] = mapped_column(
        Integer,
        CheckConstraint("rate_limit BETWEEN 1 AND 10000", name="ck_webhook_endpoints_rate_limit"),
    )


class Message(Base):
    """What the sender sent, once: the event, its signed body and where it may go. Its
    deliveries (one per endpoint it went to) carry the state of sending it."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        Index("ix_webhook_messages_app", "app_id", "created_at", "id"),
        # An Idempotency-Key is the sender's, per application.
        Index("uq_webhook_messages_app_idempotency", "app_id", "idempotency_key", unique=True),
        # The retention purge's scans (worker/tasks/retention.py), oldest first.
        Index(
            "ix_webhook_messages_unexpunged",
            "created_at",
            postgresql_where=text("expunged_at IS NULL"),
        ),
        Index("ix_webhook_messages_created", "created_at"),
        # The lists' filters (api/search.py): one event type, newest first; a channel.
        Index("ix_webhook_messages_app_event_type", "app_id", "event_type", "created_at", "id"),
        Index(
            "ix_webhook_messages_channels",
            "channels",
            postgresql_using="gin",
            postgresql_ops={"channels": "jsonb_path_ops"},
            postgresql_where=text("channels IS NOT NULL"),
            postgresql_with={"fastupdate": "off"},
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    app_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_apps.id", ondelete="CASCADE"), server_default=DEFAULT_APP_ID
    )
    # The one endpoint the sender named; None: every subscribed endpoint of the application.
    endpoint_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(200))
    channels: Mapped[list[str] | None] = mapped_column(JSONB(none_as_null=True))
    payload: Mapped[Any | None] = mapped_column(JSONB)  # None once expunged
    # The exact bytes sent (and signed), fixed at accept time so every retry is identical.
    body: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the content (payload, body, response excerpts) was removed, and why:
    # EXPUNGED_BY_RETENTION or EXPUNGED_ON_REQUEST.
    expunged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expunge_reason: Mapped[str | None] = mapped_column(String(20))

    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="message",
        order_by="Delivery.created_at, Delivery.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Delivery(Base):
    """Sending one message to one endpoint: the unit of dispatch, lease, retry and
    attempt log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The dispatcher's scan: only pending rows, in due order.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # One endpoint's deliveries, newest first: its lists, its attempts, its stats
        # (by status, from the index alone).
        Index(
            "ix_webhook_deliveries_endpoint_created",
            "endpoint_id",
            "created_at",
            "id",
            postgresql_include=["status"],
        ),
        # One endpoint's pending deliveries (park, unpark, pause, resume, a rate's horizon).
        Index(
            "ix_webhook_deliveries_endpoint_pending",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # One endpoint's failed deliveries in order of creation (recover and retry jobs).
        Index(
            "ix_webhook_deliveries_endpoint_failed",
            "endpoint_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'failed'"),
        ),
        # One endpoint's deliveries with a failed attempt, newest first: its attempts list
        # filtered to answers other than a 2xx (a few percent of its deliveries).
        Index(
            "ix_webhook_deliveries_endpoint_failed_attempts",
            "endpoint_id",
            "created_at",
            "id",
            postgresql_where=text(HAD_A_FAILED_ATTEMPT),
        ),
        Index("uq_webhook_deliveries_message_endpoint", "message_id", "endpoint_id", unique=True),
        # The retention purge's probe: is any delivery of this message still pending?
        Index(
            "ix_webhook_deliveries_pending_message",
            "message_id",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dlv"))
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=PENDING, server_default=PENDING)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Attempts made in the current round of the schedule (a manual retry starts a new round).
    schedule_position: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Claims since the last recorded attempt: each one is a worker that died, or a
    # record PostgreSQL refused. Past DELIVERY_MAX_UNRECORDED_ATTEMPTS: failed.
    unrecorded_claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the schedule runs out, parked time included: set at the first claim, cleared by a
    # manual retry (a new round).
    give_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A retry asked for while an attempt was in flight: applied when that attempt is recorded.
    retry_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # The endpoint's send slot it reserved (rate_limit): it is sent then without taking
    # another. Cleared by every other change of its state.
    rate_slot_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    message: Mapped[Message] = relationship(back_populates="deliveries")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="delivery",
        order_by="Attempt.number",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Attempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)  # error class when there was no HTTP answer
    response_excerpt: Mapped[str | None] = mapped_column(Text)

    delivery: Mapped[Delivery] = relationship(back_populates="attempts")


class Job(Base):
    """A background job that re-queues an application's failed deliveries: ``recover``
    (one endpoint's, created in ``[since, until)``) or ``retry`` (by filter). Made by the
    API, advanced by the worker in batches (``worker/jobs``), each batch one transaction
    that also moves the job's cursor, so no delivery is re-queued twice.

    * ``status``: ``queued``, ``running``, then ``done``, ``failed`` or ``cancelled``
      (finished: the partial indexes below hold the unfinished two only).
    * ``total``: failed deliveries matching when the job started (None while queued);
      ``done_count``: how many it has re-queued.
    * ``lease_token``/``leased_until``: the worker advancing it now; a worker that dies
      leaves a lease that lapses, and the next beat tick resumes the job.
    * ``cursor_*``: the last delivery it took (by endpoint id, then ``(created_at, id)``);
      ``cursor_endpoint_id`` is ``""`` before the first endpoint of a ``retry`` job.
    * ``due_frontier``: when the next delivery it re-queues becomes due (the pace).
    """

    __tablename__ = "webhook_jobs"
    __table_args__ = (
        Index("ix_webhook_jobs_app", "app_id", "created_at", "id"),
        Index("uq_webhook_jobs_app_idempotency", "app_id", "idempotency_key", unique=True),
        # The same request again while its job is unfinished gets that job.
        Index(
            "uq_webhook_jobs_app_unfinished_request",
            "app_id",
            "request_hash",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        # What the beat tick (worker/jobs/tasks.py) advances, oldest first.
        Index(
            "ix_webhook_jobs_unfinished",
            "created_at",
            "id",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name="ck_webhook_jobs_status",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    app_id: Mapped[str] = mapped_column(ForeignKey("webhook_apps.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=JOB_QUEUED, server_default=JOB_QUEUED)
    # The filter: deliveries now `failed`, of this endpoint (None: every enabled one of the
    # application), of messages of this type (None: any), created in [since, until).
    endpoint_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str | None] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    total: Mapped[int | None] = mapped_column(Integer)
    done_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)  # why a `failed` job stopped
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[str | None] = mapped_column(String(32))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cursor_endpoint_id: Mapped[str] = mapped_column(String(40), default="", server_default="")
    cursor_created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cursor_delivery_id: Mapped[str] = mapped_column(String(40), default="", server_default="")
    due_frontier: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OperationalEvent(Base):
    """An operational event decided and not yet turned into messages: the outbox that
    the attempt's record (and the API's disable) writes in the same statement as the
    change it reports. The worker routes each to the subscribed operational endpoints
    of its application and of ``OPERATIONS_APP_ID``, then deletes it
    (``worker/operational``)."""

    __tablename__ = "webhook_operational_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("webhook_apps.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
