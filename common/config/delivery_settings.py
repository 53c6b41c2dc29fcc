"""Level 5: webhook delivery (payloads, destinations, timeouts, retries, dispatch).

One group of :class:`common.config.settings.Settings` fields; the validators that
compare fields live there.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DeliverySettings"]


class DeliverySettings(BaseModel):
    """Webhook delivery settings."""

    max_payload_bytes: int = Field(
        default=262144,
        ge=1024,
        description=(
            "Largest accepted message `payload` (serialized JSON, bytes); larger ones get 413."
        ),
    )
    event_types_strict: bool = Field(
        default=False,
        description=(
            "Refuse (422) a message whose `event_type` is not in the catalog (`/v1/event-types`);"
            " unset, any type is accepted and only registered ones have their schema checked."
        ),
    )
    allow_private_destinations: bool = Field(
        default=False,
        description=(
            "Let webhooks go to loopback/private/link-local addresses (local development, tests)."
            " Refused when `JENGA_ENV=production`."
        ),
    )
    delivery_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect timeout of one webhook delivery attempt."
    )
    delivery_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Total time one delivery attempt may take; a later answer counts as a timeout.",
    )
    delivery_retry_schedule: str = Field(
        default="5s,5m,30m,2h,5h,10h,10h",
        description=(
            "Delays between delivery attempts (ms/s/m/h/d); after the last one the message is"
            " `failed`."
        ),
    )
    delivery_retry_jitter: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description=(
            "Each retry delay grows by a random fraction up to this, so retries spread out."
        ),
    )
    delivery_dispatch_interval_seconds: float = Field(
        default=1.0, gt=0, description="How often beat enqueues the messages that are due."
    )
    delivery_redispatch_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "A due message whose task has not started this long after enqueueing"
            " (the broker lost it) is enqueued again (after 20 s at most while the deliveries"
            " queue is empty); one whose worker died mid-delivery"
            " goes again as soon as its lease lapses (`DELIVERY_TIMEOUT_SECONDS` + 10 s)."
        ),
    )
    delivery_rate_horizon_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description=(
            "How far ahead a delivery to an endpoint with a `rate_limit` may reserve its send"
            " slot; past it the endpoint's unreserved backlog waits half this long again,"
            " in one statement, instead of a task per delivery per slot."
        ),
    )
    endpoint_disable_after_days: float = Field(
        default=5.0,
        ge=0,
        le=365,
        description=(
            "An endpoint whose every attempt has failed for this long is disabled at its next"
            " failure (as Svix does; `0`: never). Its pending deliveries then end `failed`, for"
            " a recover once it works again; enabling it starts the count afresh."
        ),
    )
    endpoint_failing_after_seconds: float = Field(
        default=300.0,
        ge=0,
        le=7 * 86400,
        description=(
            "The operational webhook `endpoint.failing` is sent at the first failed attempt"
            " once every attempt has failed for this long (`0`: at the first failure after a"
            " success); once per run of failures, which a success ends"
            " (`endpoint.recovered`). The wait keeps a blip from telling anyone."
        ),
    )
    delivery_dispatch_batch: int = Field(
        default=500, ge=1, description="Most messages one dispatch run enqueues."
    )
    delivery_max_unrecorded_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "A message claimed this many times without an attempt being recorded (the worker"
            " died during it, or PostgreSQL refused the record) is `failed` with the reason,"
            " not sent again."
        ),
    )
    message_retention_days: float = Field(
        default=30,
        gt=0,
        description=(
            "How long a delivered or failed message keeps its content (payload, body, the"
            " receivers' response excerpts); then it is expunged and says so."
        ),
    )
    attempt_retention_days: float = Field(
        default=90,
        gt=0,
        description=(
            "How long a message's record (the row and its attempt log) is kept; then it is"
            " deleted. Content goes at `MESSAGE_RETENTION_DAYS` or with the record, if sooner."
        ),
    )
    retention_interval_seconds: float = Field(
        default=600, gt=0, description="How often beat runs the retention purge."
    )
    retention_batch: int = Field(
        default=500,
        ge=1,
        le=10000,
        description=(
            "Messages one purge statement expunges or deletes: each batch is its own short"
            " transaction, so no lock is held for long."
        ),
    )
    recover_rate_per_second: float = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description=(
            "Failed deliveries a second that recover and bulk-retry jobs make due again, all"
            " running jobs together (shared between them): each re-queues its deliveries a"
            " couple of seconds ahead, spaced at this pace, for the dispatcher to send among"
            " live traffic."
        ),
    )
    task_time_limit_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Backstop for every task of a prefork worker (ops): past 90% of this the task is"
            " interrupted (soft limit), past it the pool process is replaced (hard limit)."
            " The threads pool (deliveries) applies neither: a delivery attempt ends within"
            " `DELIVERY_TIMEOUT_SECONDS`, its statements within PostgreSQL's statement_timeout."
        ),
    )
