"""Level 5, delivery's statements on PostgreSQL: claim what is due (``FOR
UPDATE SKIP LOCKED``), lease one delivery (one message to one endpoint), release
it, and record an attempt with the delivery's next state in one statement guarded
by the lease token."""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from common.config import Settings
from common.connections.probes import describe_error
from common.delivery.retry_schedule import decide
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from worker.delivery.post import AttemptResult
from worker.delivery.resources import DB_ERRORS, DB_REFUSALS, execute

__all__ = [
    "CLAIM_DUE",
    "LEASE_MARGIN_SECONDS",
    "MESSAGE_DISPATCHED",
    "CLAIM_ONE",
    "FAIL_DISABLED",
    "GIVE_UP",
    "PARK",
    "PARK_ENDPOINT",
    "PARK_EXPIRED",
    "RATE_PARK",
    "RECORD",
    "RELEASE",
    "RESERVE",
    "UNDISPATCH",
    "UNPARK",
    "Claim",
    "claim",
    "fail_disabled",
    "give_up",
    "park",
    "unpark",
    "lease_seconds",
    "record",
    "record_with_retries",
]

log = logging.getLogger("jenga.delivery")


# What a claim leaves, besides the attempt's deadline, for resolving the host before it
# and recording the attempt after it. A worker that would POST with less of its lease
# left releases the message instead, and it stops retrying the record before the lease
# ends: a live worker never loses a message it is sending.
LEASE_MARGIN_SECONDS = 10.0


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds a message: the attempt's hard deadline plus
    ``LEASE_MARGIN_SECONDS``. A dead worker's claimed messages are dispatched again
    as soon as it lapses (``CLAIM_DUE``): 25 s with the default settings, however
    long the broker keeps the dead worker's task unacknowledged."""
    return settings.delivery_timeout_seconds + LEASE_MARGIN_SECONDS


CLAIM_DUE = """
    UPDATE webhook_deliveries SET dispatched_at = now()
    WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE status = 'pending'
          -- Due, or holding a send slot (a promised rate) that comes before the next run:
          -- enqueued now with the slot as its ETA, it is sent on time, not a run late.
          AND (next_attempt_at <= now()
               OR (rate_slot_at IS NOT NULL
                   AND next_attempt_at <= now() + make_interval(secs => %(lookahead)s)))
          -- Never enqueued, or enqueued long ago and never started (the broker lost the
          -- task), or started by a worker whose lease lapsed without a record or a
          -- release: that worker died, and its task is not coming back soon (Redis
          -- returns it after the visibility timeout; RabbitMQ's redelivery met the lease).
          AND (dispatched_at IS NULL
               OR dispatched_at < now() - make_interval(secs => %(redispatch)s)
               OR claimed_until < now())
          AND (claimed_until IS NULL OR claimed_until < now())
          -- A dead host's due backlog is not enqueued while it is being parked, nor a
          -- paused endpoint's (an attempt in flight when it was paused may leave a retry).
          AND NOT EXISTS (
              SELECT 1 FROM webhook_endpoints e
              WHERE e.id = webhook_deliveries.endpoint_id
                AND (e.parked_until > now() OR e.paused_at IS NOT NULL))
        ORDER BY next_attempt_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id, CASE WHEN next_attempt_at > now() THEN next_attempt_at END AS eta,
              -- Operational webhooks go on their own queue.
              (SELECT e.operational FROM webhook_endpoints e
               WHERE e.id = webhook_deliveries.endpoint_id) AS operational
    """


# A fanned-out message's deliveries the API stamped dispatched and left to FAN_OUT_TASK
# (not yet started by a worker: a repeated fan-out task enqueues nothing twice that runs).
MESSAGE_DISPATCHED = """
    SELECT id FROM webhook_deliveries
    WHERE message_id = %(message_id)s AND status = 'pending'
      AND dispatched_at IS NOT NULL AND claimed_until IS NULL
    ORDER BY endpoint_id
    """


# Every claim counts until an attempt is recorded (or the claim released): a
# message that keeps being claimed and never recorded has killed its workers, or
# cannot be recorded, and must end instead of being sent again for ever.
CLAIM_ONE = """
    UPDATE webhook_deliveries d
    SET claim_token = %(token)s, claimed_until = now() + make_interval(secs => %(lease)s),
        unrecorded_claims = d.unrecorded_claims + 1,
        give_up_at = COALESCE(d.give_up_at, now() + make_interval(secs => %(round)s)),
        -- A reserved send slot is spent by the claim that finds it (sent or not).
        rate_slot_at = NULL
    FROM webhook_endpoints e, webhook_messages m, webhook_deliveries held
    WHERE d.id = %(id)s AND e.id = d.endpoint_id AND m.id = d.message_id AND held.id = d.id
      AND d.status = 'pending'
      -- A send slot's task runs at the slot by the worker's clock: a few ms of skew
      -- with PostgreSQL's must not turn it away.
      AND d.next_attempt_at <= now() + CASE WHEN d.rate_slot_at IS NOT NULL
                                            THEN interval '250 milliseconds'
                                            ELSE interval '0' END
      AND (d.claimed_until IS NULL OR d.claimed_until < now())
      AND (e.parked_until IS NULL OR e.parked_until <= now()) AND e.paused_at IS NULL
    RETURNING m.id AS message_id, m.body, d.schedule_position, d.attempt_count,
              d.unrecorded_claims,
              e.id AS endpoint_id, e.url, e.secret, e.disabled, e.headers,
              CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
                AS previous_secret,
              e.rate_limit,
              -- A slot missed by more than this (overloaded workers or database) is
              -- forfeited: the delivery takes a new one, so that late deliveries are spaced
              -- again instead of all going at once.
              COALESCE(held.rate_slot_at > now() - interval '500 milliseconds', false)
                AS holds_rate_slot,
              m.app_id, m.created_at AS message_created_at, now() AS claimed_at
    """

# A claimed delivery given back without an attempt: no task, no lease, no unrecorded claim.
_UNCLAIMED = "dispatched_at = NULL, claim_token = NULL, claimed_until = NULL, unrecorded_claims = 0"
# A retry asked for during the claim starts its new round here (no attempt was made), its
# deadline unset; without one the deadline stays, or moves on with a wait (``otherwise``).
_ROUND_IF_ASKED = (
    "schedule_position = CASE WHEN retry_requested THEN 0 ELSE schedule_position END,"
    " retry_requested = false"
)


def _give_up_at_if_asked(otherwise: str) -> str:
    return f"give_up_at = CASE WHEN retry_requested THEN NULL ELSE {otherwise} END"


NEW_ROUND_IF_ASKED = f"{_ROUND_IF_ASKED}, {_give_up_at_if_asked('give_up_at')}"

# A promised rate (common/delivery/rate_slots.py), its slot reserved: the delivery comes
# back at its slot, holding it (not a new round: time waiting for a slot does not count
# toward the retry schedule, so give_up_at moves on with it).
RESERVE = f"""
    UPDATE webhook_deliveries
    SET next_attempt_at = now() + make_interval(secs => %(wait)s),
        rate_slot_at = now() + make_interval(secs => %(wait)s),
        {_UNCLAIMED}, {_ROUND_IF_ASKED},
        {_give_up_at_if_asked("give_up_at + make_interval(secs => %(wait)s)")}
    WHERE id = %(id)s AND claim_token = %(token)s
    """

# A promised rate whose slots are reserved past the horizon: this delivery and every
# other due one of the endpoint that holds no slot wait %(wait)s s, in one statement
# (SKIP LOCKED, as PARK), instead of a task each per refused reservation. Their
# give_up_at moves on by the time each waits.
_UNTIL = "(now() + make_interval(secs => %(wait)s))"
RATE_PARK = f"""
    WITH released AS (
        UPDATE webhook_deliveries
        SET next_attempt_at = {_UNTIL},
            {_UNCLAIMED}, {_ROUND_IF_ASKED},
            {_give_up_at_if_asked("give_up_at + make_interval(secs => %(wait)s)")}
        WHERE id = %(id)s AND claim_token = %(token)s
        RETURNING endpoint_id
    ), waiting AS (
        UPDATE webhook_deliveries
        SET give_up_at = give_up_at + ({_UNTIL} - next_attempt_at),
            next_attempt_at = {_UNTIL}, dispatched_at = NULL
        WHERE id IN (
            SELECT id FROM webhook_deliveries
            WHERE endpoint_id = (SELECT endpoint_id FROM released) AND id <> %(id)s
              AND status = 'pending' AND rate_slot_at IS NULL
              AND next_attempt_at < {_UNTIL}
              AND (claimed_until IS NULL OR claimed_until < now())
            FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM waiting) AS waiting
    """


# Operational events (common/delivery/operational.py), written to their outbox by the
# statement that decides them. Times as RFC 3339 in UTC, as the API writes them.
def _iso(expression: str) -> str:
    return f"""to_char({expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _exhausted_notice(failed: str, status_code: str) -> str:
    """The INSERT of ``message.attempt.exhausted`` for each delivery the CTE ``failed``
    (id, message_id, endpoint_id, attempt_count, last_error) ended failed, but those of
    operational endpoints."""
    return f"""
        INSERT INTO webhook_operational_events (app_id, event_type, data)
        SELECT e.app_id, 'message.attempt.exhausted', jsonb_build_object(
                   'app_id', e.app_id, 'endpoint_id', e.id, 'endpoint_uid', e.uid,
                   'message_id', f.message_id, 'delivery_id', f.id,
                   'attempt_count', f.attempt_count, 'last_status_code', {status_code},
                   'last_error', f.last_error)
        FROM {failed} f JOIN webhook_endpoints e ON e.id = f.endpoint_id
        WHERE NOT e.operational"""


GIVE_UP = f"""
    WITH failed AS (
        UPDATE webhook_deliveries SET status = 'failed', last_error = CAST(%(reason)s AS text),
            next_attempt_at = NULL, dispatched_at = NULL, claim_token = NULL, claimed_until = NULL
        WHERE id = %(id)s AND claim_token = %(token)s
        RETURNING id, message_id, endpoint_id, attempt_count, last_error
    ), notice AS ({_exhausted_notice("failed", "NULL::integer")})
    SELECT id FROM failed
    """

RELEASE = f"""
    UPDATE webhook_deliveries
    SET next_attempt_at = now() + make_interval(secs => %(retry_in)s),
        {_UNCLAIMED}, {NEW_ROUND_IF_ASKED}
    WHERE id = %(id)s AND claim_token = %(token)s
    """

# A receiver whose breaker is open: first the endpoint is marked parked (one row,
# committed at once: from then on the dispatcher skips its messages and their
# tasks claim nothing), then this message and every other pending one of the
# endpoint wait until that time, in one statement, instead of a task per message
# per cycle. A message whose schedule runs out meanwhile is failed
# (PARK_EXPIRED), so parked time counts toward the schedule.
PARK_ENDPOINT = """
    UPDATE webhook_endpoints SET parked_until = now() + make_interval(secs => %(retry_in)s)
    WHERE id = %(endpoint_id)s
    RETURNING parked_until
    """

PARK = f"""
    WITH released AS (
        UPDATE webhook_deliveries
        SET next_attempt_at = %(until)s,
            {_UNCLAIMED}, {NEW_ROUND_IF_ASKED}
        WHERE id = %(id)s AND claim_token = %(token)s
          AND (retry_requested OR give_up_at IS NULL OR give_up_at > %(until)s)
        RETURNING endpoint_id
    ), parked AS (
        -- SKIP LOCKED: two workers parking the same endpoint at once split its rows
        -- instead of deadlocking on each other's (each locks its own message first).
        UPDATE webhook_deliveries
        SET next_attempt_at = %(until)s, dispatched_at = NULL
        WHERE id IN (
            SELECT id FROM webhook_deliveries
            WHERE endpoint_id = (SELECT endpoint_id FROM released) AND id <> %(id)s
              AND status = 'pending'
              AND next_attempt_at < %(until)s
              AND (claimed_until IS NULL OR claimed_until < now())
            FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM parked) AS parked
    """

# The receiver's trial call succeeded and its breaker closed: the endpoint's parked
# messages (all moved to exactly its parked_until) are due now, not at the end of a
# park made for a trial that might have failed.
UNPARK = """
    WITH old AS (
        SELECT id, parked_until FROM webhook_endpoints
        WHERE id = %(endpoint_id)s AND parked_until IS NOT NULL
        FOR UPDATE
    ), cleared AS (
        UPDATE webhook_endpoints e SET parked_until = NULL FROM old WHERE e.id = old.id
    ), resumed AS (
        UPDATE webhook_deliveries d SET next_attempt_at = now(), dispatched_at = NULL FROM old
        WHERE d.endpoint_id = old.id AND d.status = 'pending'
          AND d.next_attempt_at = old.parked_until
        RETURNING 1
    )
    SELECT count(*) AS resumed FROM resumed
    """

PARK_EXPIRED = f"""
    WITH failed AS (
        UPDATE webhook_deliveries SET status = 'failed', last_error = CAST(%(reason)s AS text),
            next_attempt_at = NULL, dispatched_at = NULL, claim_token = NULL, claimed_until = NULL
        WHERE id = %(id)s AND claim_token = %(token)s
        RETURNING id, message_id, endpoint_id, attempt_count, last_error
    ), notice AS ({_exhausted_notice("failed", "NULL::integer")})
    SELECT id FROM failed
    """

# The attempt, the message's next state, the endpoint's (failing, disabled) and the
# operational events they make, in one statement: all or nothing, and one round trip.
# Nothing is written unless the lease token still matches.


def _dead(e: str) -> str:
    """Every attempt since ``failing_since`` failed, for longer than
    ENDPOINT_DISABLE_AFTER_DAYS (0: never). Only on a failed attempt."""
    return (
        f"(CAST(%(disable_after)s AS float8) > 0 AND COALESCE({e}.failing_since"
        f" < now() - make_interval(secs => CAST(%(disable_after)s AS float8)), false))"
    )


def _announce(e: str) -> str:
    """A failed attempt that sends endpoint.failing: none sent yet for this run of
    failures, which began ENDPOINT_FAILING_AFTER_SECONDS ago or more (this attempt
    begins it when there was none)."""
    return (
        f"({e}.failing_notified_at IS NULL AND NOT {e}.operational AND NOT {e}.disabled"
        f" AND COALESCE({e}.failing_since, now())"
        f" <= now() - make_interval(secs => CAST(%(failing_after)s AS float8)))"
    )


_SUCCEEDED = "CAST(%(succeeded)s AS boolean)"
_GONE = "CAST(%(disable_endpoint)s AS boolean)"

RECORD = f"""
    WITH delivery AS (
        UPDATE webhook_deliveries
        SET status = CASE WHEN retry_requested THEN 'pending' ELSE CAST(%(status)s AS varchar) END,
            attempt_count = attempt_count + 1,
            schedule_position = CASE WHEN retry_requested THEN 0 ELSE schedule_position + 1 END,
            next_attempt_at = CASE WHEN retry_requested THEN now()
                                   WHEN CAST(%(status)s AS varchar) = 'pending'
                                   THEN now() + make_interval(secs => %(retry_in)s) END,
            delivered_at = CASE WHEN CAST(%(status)s AS varchar) = 'delivered'
                                THEN now() ELSE delivered_at END,
            last_error = CAST(%(last_error)s AS text),
            give_up_at = CASE WHEN retry_requested THEN NULL ELSE give_up_at END,
            retry_requested = false,
            dispatched_at = NULL, claim_token = NULL, claimed_until = NULL,
            unrecorded_claims = 0
        WHERE id = %(id)s AND claim_token = %(token)s
        RETURNING id, message_id, endpoint_id, attempt_count, status, last_error
    ), attempt AS (
        INSERT INTO webhook_attempts
            (delivery_id, number, started_at, duration_ms, status_code, error, response_excerpt)
        SELECT id, attempt_count,
               CAST(%(started_at)s AS timestamptz), CAST(%(duration_ms)s AS integer),
               CAST(%(status_code)s AS integer), CAST(%(error)s AS text), CAST(%(excerpt)s AS text)
        FROM delivery
    ), old AS (
        -- The endpoint's row is locked and written only when this attempt changes it (busy
        -- endpoints share it): a 410 disables it; the first failure after a success starts
        -- failing_since, a success ends it; a failure ENDPOINT_FAILING_AFTER_SECONDS into
        -- them announces it, one ENDPOINT_DISABLE_AFTER_DAYS into them disables it. Locked
        -- before it is read: of two workers recording at once, one makes each change and
        -- tells of it, and the other finds it made.
        SELECT e.id, e.operational, e.disabled, e.disabled_reason, e.failing_since,
               e.failing_notified_at
        FROM webhook_endpoints e
        WHERE e.id = (SELECT endpoint_id FROM delivery)
          AND ({_GONE}
               OR ({_SUCCEEDED} AND e.failing_since IS NOT NULL)
               OR (NOT {_SUCCEEDED}
                   AND (e.failing_since IS NULL OR (NOT e.disabled AND {_dead("e")})
                        OR {_announce("e")})))
        FOR UPDATE
    ), endpoint AS (
        UPDATE webhook_endpoints e
        SET failing_since = CASE WHEN {_SUCCEEDED} THEN NULL
                                 ELSE COALESCE(old.failing_since, now()) END,
            failing_notified_at = CASE WHEN {_SUCCEEDED} THEN NULL
                                       WHEN {_announce("old")} THEN now()
                                       ELSE old.failing_notified_at END,
            disabled = old.disabled OR {_GONE} OR {_dead("old")},
            disabled_reason = CASE
                WHEN old.disabled THEN old.disabled_reason
                WHEN {_GONE} THEN CAST(%(disabled_reason)s AS text)
                WHEN {_dead("old")} THEN 'disabled automatically: every attempt failed since '
                                         || to_char(old.failing_since AT TIME ZONE 'UTC',
                                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                ELSE old.disabled_reason END,
            updated_at = now()
        FROM old
        WHERE e.id = old.id
        RETURNING e.id, e.app_id, e.uid, e.operational, e.disabled_reason, e.failing_since,
                  old.failing_since AS failed_since,
                  e.disabled AND NOT old.disabled AS disabled_now,
                  e.failing_notified_at IS NOT NULL AND old.failing_notified_at IS NULL
                    AS failing_now,
                  old.failing_notified_at IS NOT NULL AND e.failing_since IS NULL AS recovered_now
    ), endpoint_notice AS (
        INSERT INTO webhook_operational_events (app_id, event_type, data)
        SELECT x.app_id, kind.event_type,
               jsonb_build_object('app_id', x.app_id, 'endpoint_id', x.id, 'endpoint_uid', x.uid)
               || kind.data
        FROM endpoint x CROSS JOIN LATERAL (VALUES
            ('endpoint.disabled', x.disabled_now, jsonb_build_object(
                'trigger', 'automatic', 'reason', x.disabled_reason,
                'failing_since', {_iso("x.failing_since")}, 'disabled_at', {_iso("now()")})),
            -- Disabled by this failure: that says it all.
            ('endpoint.failing', x.failing_now AND NOT x.disabled_now, jsonb_build_object(
                'failing_since', {_iso("x.failing_since")},
                'last_error', CAST(%(last_error)s AS text))),
            ('endpoint.recovered', x.recovered_now, jsonb_build_object(
                'failing_since', {_iso("x.failed_since")}, 'recovered_at', {_iso("now()")}))
        ) AS kind(event_type, due, data)
        WHERE kind.due AND NOT x.operational
    ), exhausted AS (
        -- A 410 tells of its endpoint's disabling instead.
        SELECT * FROM delivery WHERE status = 'failed' AND NOT {_GONE}
    ), exhausted_notice AS ({_exhausted_notice("exhausted", "CAST(%(status_code)s AS integer)")})
    SELECT attempt_count, status,
           COALESCE((SELECT disabled_now AND NOT {_GONE} FROM endpoint), false) AS auto_disabled
    FROM delivery
    """


FAIL_DISABLED = """
    UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint disabled',
        next_attempt_at = NULL, claim_token = NULL, claimed_until = NULL
    WHERE id = %(id)s AND claim_token = %(token)s
    """

UNDISPATCH = (
    "UPDATE webhook_deliveries SET dispatched_at = NULL"
    " WHERE id = ANY(%(ids)s) AND status = 'pending'"
)


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    message_id: str  # the webhook-id: the same for every endpoint the message goes to
    token: str
    body: str
    schedule_position: int
    endpoint_id: str
    url: str
    secret: str
    disabled: bool
    unrecorded_claims: int = 1  # this claim included
    # The endpoint's custom headers, and the secret a rotation replaced while it still signs.
    headers: dict[str, str] = field(default_factory=dict)
    previous_secret: str | None = None
    lease_ends: float = math.inf  # time.monotonic() by which the lease has surely lapsed
    # The endpoint's promised rate (None: none), and whether this claim spends a send
    # slot the delivery reserved before (common/delivery/rate_slots.py).
    rate_limit: int | None = None
    holds_rate_slot: bool = False
    # The message's application and creation, and the claim, both by PostgreSQL's clock:
    # its end-to-end latency (worker/delivery/end_to_end.py).
    app_id: str | None = None
    message_created_at: datetime | None = None
    claimed_at: datetime | None = None

    def lease_left(self) -> float:
        return self.lease_ends - time.monotonic()


def round_seconds(settings: Settings) -> float:
    """How long one round of the retry schedule may last: every delay at its
    longest jitter. Past it a message still parked behind an open breaker fails."""
    return sum(settings.delivery_retry_delays) * (1 + settings.delivery_retry_jitter)


def park(claimed: Claim, retry_in: float, why: str) -> str | None:
    """The receiver's breaker is open for ``retry_in`` more seconds: wait with
    the rest of the endpoint's messages (``"deferred"``), or end ``"failed"`` when
    that is past the message's schedule (None: our lease had lapsed, or the endpoint
    is gone)."""
    parked = execute(PARK_ENDPOINT, {"endpoint_id": claimed.endpoint_id, "retry_in": retry_in})
    if not parked:
        return None
    until = parked[0]["parked_until"]
    rows = execute(PARK, {"id": claimed.delivery_id, "token": claimed.token, "until": until})
    if rows and rows[0]["released"]:
        log_event(
            log,
            "delivery.parked",
            delivery_id=claimed.delivery_id,
            endpoint_id=claimed.endpoint_id,
            retry_in=round(retry_in, 1),
            parked=rows[0]["parked"],
        )
        return "deferred"
    reason = f"failed: the receiver was unavailable past the retry schedule ({why})"
    params = {"id": claimed.delivery_id, "token": claimed.token, "reason": reason}
    if not execute(PARK_EXPIRED, params):
        return None
    log_event(
        log,
        "delivery.failed_parked",
        logging.WARNING,
        delivery_id=claimed.delivery_id,
        endpoint_id=claimed.endpoint_id,
        reason=why,
    )
    return "failed"


def unpark(endpoint_id: str) -> int:
    """The endpoint's breaker closed: its parked messages are due now (how many)."""
    rows = execute(UNPARK, {"endpoint_id": endpoint_id})
    resumed = rows[0]["resumed"] if rows else 0
    if resumed:
        log_event(log, "delivery.unparked", endpoint_id=endpoint_id, resumed=resumed)
    return resumed


def claim(delivery_id: str, settings: Settings) -> Claim | None:
    token = uuid.uuid4().hex
    # Taken before the statement: PostgreSQL's claimed_until is no earlier than this.
    lease_ends = time.monotonic() + lease_seconds(settings)
    rows = execute(
        CLAIM_ONE,
        {
            "id": delivery_id,
            "token": token,
            "lease": lease_seconds(settings),
            "round": round_seconds(settings),
        },
    )
    if not rows:
        return None
    row = rows[0]
    return Claim(
        delivery_id,
        row["message_id"],
        token,
        row["body"],
        row["schedule_position"],
        row["endpoint_id"],
        row["url"],
        row["secret"],
        row["disabled"],
        row["unrecorded_claims"],
        row["headers"] or {},
        row["previous_secret"],
        lease_ends,
        row["rate_limit"],
        row["holds_rate_slot"],
        row["app_id"],
        row["message_created_at"],
        row["claimed_at"],
    )


def give_up(claimed: Claim, settings: Settings) -> None:
    """Fail a message that was claimed more than ``DELIVERY_MAX_UNRECORDED_ATTEMPTS``
    times without an attempt being recorded: sending it again would loop for ever."""
    lost = claimed.unrecorded_claims - 1
    reason = (
        f"gave up: {lost} attempts were never recorded (the worker died during each,"
        " or PostgreSQL refused the record); see the worker's log"
    )
    execute(GIVE_UP, {"id": claimed.delivery_id, "token": claimed.token, "reason": reason})
    log_event(
        log,
        "delivery.gave_up",
        logging.ERROR,
        delivery_id=claimed.delivery_id,
        endpoint_id=claimed.endpoint_id,
        unrecorded_attempts=lost,
        limit=settings.delivery_max_unrecorded_attempts,
    )


def record(claimed: Claim, result: AttemptResult, settings: Settings) -> str | None:
    """Store the attempt and the message's next state, once: a second call with
    the same claim (a commit whose answer was lost) finds the token gone."""
    decision = decide(
        result.outcome,
        claimed.schedule_position,
        settings.delivery_retry_delays,
        settings.delivery_retry_jitter,
    )
    outcome = result.outcome
    last_error = None if outcome.succeeded else (outcome.error or f"HTTP {outcome.status_code}")
    rows = execute(
        RECORD,
        {
            "id": claimed.delivery_id,
            "token": claimed.token,
            "status": decision.status,
            "retry_in": decision.retry_in or 0.0,
            "last_error": last_error,
            "started_at": result.started_at,
            "duration_ms": result.duration_ms,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "excerpt": result.excerpt,
            "disable_endpoint": decision.disable_endpoint,
            "disabled_reason": "the receiver answered 410 Gone",
            "succeeded": outcome.succeeded,
            "disable_after": settings.endpoint_disable_after_days * 86400,
            "failing_after": settings.endpoint_failing_after_seconds,
        },
    )
    if not rows:
        return None  # our lease expired and someone else took over
    number = rows[0]["attempt_count"]
    if rows[0]["status"] != decision.status:
        # An operator asked for a retry during the attempt: a new round starts now.
        log_event(log, "delivery.retry_applied", delivery_id=claimed.delivery_id, attempt=number)
    log_event(
        log,
        "delivery.attempt",
        delivery_id=claimed.delivery_id,
        message_id=claimed.message_id,
        endpoint_id=claimed.endpoint_id,
        attempt=number,
        status_code=outcome.status_code,
        error=outcome.error,
        duration_ms=result.duration_ms,
        result=decision.status,
        retry_in=decision.retry_in,
    )
    if decision.disable_endpoint or rows[0]["auto_disabled"]:
        log_event(
            log,
            "delivery.endpoint_disabled",
            logging.WARNING,
            endpoint_id=claimed.endpoint_id,
            reason="410 Gone"
            if decision.disable_endpoint
            else f"every attempt failed for {settings.endpoint_disable_after_days:g} days",
        )
    return decision.status


def record_with_retries(claimed: Claim, result: AttemptResult, settings: Settings) -> str | None:
    """Recording after the POST is the one step whose loss means a duplicate
    delivery, so a PostgreSQL blip is retried (backoff, full jitter) for up to
    ``DELIVERY_TIMEOUT_SECONDS``, and never past the last second of the lease (then
    the dispatcher may hand the message to another worker), before giving the
    message up to the sweeper."""
    deadline = min(
        time.monotonic() + settings.delivery_timeout_seconds,
        time.monotonic() + claimed.lease_left() - 1.0,
    )
    attempt = 0
    scrubbed = False
    while True:
        try:
            return record(claimed, result, settings)
        except DB_REFUSALS as error:
            # Not a blip: PostgreSQL will refuse these values every time. Record
            # the attempt without what the receiver sent, saying so (once).
            if scrubbed:
                raise
            scrubbed = True
            log_event(
                log,
                "delivery.record_refused",
                logging.WARNING,
                delivery_id=claimed.delivery_id,
                error=describe_error(error),
            )
            result = without_details(result, error)
        except DB_ERRORS as error:
            if time.monotonic() >= deadline:
                raise
            log_event(
                log,
                "delivery.record_retry",
                logging.WARNING,
                delivery_id=claimed.delivery_id,
                error=describe_error(error),
            )
            time.sleep(
                min(full_jitter_backoff(attempt, 0.2, 5.0), max(0.0, deadline - time.monotonic()))
            )
            attempt += 1


def without_details(result: AttemptResult, refusal: Exception) -> AttemptResult:
    """``result`` without the excerpt and error text PostgreSQL refused to store."""
    outcome = result.outcome
    note = f"(details not stored: {type(refusal).__name__})"
    error = None if outcome.error is None else f"{outcome.error.split(':', 1)[0]} {note}"
    return replace(
        result,
        outcome=replace(outcome, error=error),
        excerpt=None if result.excerpt is None else note,
    )


def fail_disabled(claimed: Claim) -> None:
    execute(FAIL_DISABLED, {"id": claimed.delivery_id, "token": claimed.token})
    log_event(
        log,
        "delivery.endpoint_disabled_skip",
        delivery_id=claimed.delivery_id,
        endpoint_id=claimed.endpoint_id,
    )
