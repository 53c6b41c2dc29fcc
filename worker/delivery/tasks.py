"""Level 5: the two delivery tasks (see :mod:`worker.delivery` for the story)."""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime

from common.broker import DELIVER_TASK, DISPATCH_TASK, FAN_OUT_TASK, queue_names
from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.delivery.destinations import DestinationError, resolve_destination
from common.delivery.retry_schedule import Outcome
from common.delivery.signing import webhook_headers
from common.delivery.urls import normalise_url
from common.guards.breaker import policy as bp
from common.guards.names import webhook_service
from common.guards.outcome import failed_status
from common.health.fleet_metrics import record_delivery, record_end_to_end
from common.support.logs import log_event
from worker.app import app
from worker.delivery import in_flight
from worker.delivery.end_to_end import end_to_end_seconds
from worker.delivery.post import AttemptResult, post
from worker.delivery.queries import (
    CLAIM_DUE,
    MESSAGE_DISPATCHED,
    RELEASE,
    UNDISPATCH,
    claim,
    fail_disabled,
    give_up,
    park,
    record_with_retries,
    unpark,
)
from worker.delivery.rate import slot_lookahead_seconds, wait_for_slot
from worker.delivery.redispatch import deliveries_waiting, redispatch_seconds
from worker.delivery.resources import DB_ERRORS, execute, http_client
from worker.guarded import GuardedTask, GuardRefused, registry

__all__ = [
    "DELIVER_TASK",
    "deliver",
    "dispatch_due",
    "enqueue_all",
    "enqueue_delivery",
    "fan_out",
    "queue_role",
]

log = logging.getLogger("jenga.delivery")


def enqueue_delivery(
    delivery_id: str, settings: Settings, eta: datetime | None = None, role: str = "deliveries"
) -> None:
    """Enqueue a delivery's task; ``eta``: not before then (a promised rate's send slot);
    ``role``: its queue's (``operational`` for the operational webhooks)."""
    deliver.apply_async((delivery_id,), queue=queue_names(settings.jenga_namespace)[role], eta=eta)


@app.task(name=DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> int:
    """Enqueue every pending delivery that is due (and not being delivered)."""
    settings = get_settings()
    try:
        due = execute(
            CLAIM_DUE,
            {
                "redispatch": redispatch_seconds(
                    settings.delivery_redispatch_seconds, deliveries_waiting(settings)
                ),
                "batch": settings.delivery_dispatch_batch,
                "lookahead": slot_lookahead_seconds(settings),
            },
        )
    except DB_ERRORS as error:
        # PostgreSQL is down: the watchdog raises the alarm; the next run retries.
        log_event(log, "delivery.dispatch_failed", logging.WARNING, error=describe_error(error))
        return 0
    return enqueue_all(
        [row["id"] for row in due],
        settings,
        [row["eta"] for row in due],
        [queue_role(row["operational"]) for row in due],
    )


@app.task(name=FAN_OUT_TASK, ignore_result=True)
def fan_out(message_id: str) -> int:
    """Enqueue the deliveries of a message the API fanned out to many endpoints (it
    published this one task instead of one per delivery). Lost or failed, the
    deliveries are still stamped dispatched: the dispatcher enqueues them after
    ``DELIVERY_REDISPATCH_SECONDS``, as any task the broker lost."""
    settings = get_settings()
    try:
        ids = [row["id"] for row in execute(MESSAGE_DISPATCHED, {"message_id": message_id})]
    except DB_ERRORS as error:
        log_event(
            log,
            "delivery.fan_out_failed",
            logging.WARNING,
            message_id=message_id,
            error=describe_error(error),
        )
        return 0
    return enqueue_all(ids, settings)


def queue_role(operational: bool) -> str:
    """The queue of a delivery to an operational endpoint, or to any other."""
    return "operational" if operational else "deliveries"


def enqueue_all(
    ids: list[str],
    settings: Settings,
    etas: list[datetime | None] | None = None,
    roles: list[str] | None = None,
) -> int:
    """Enqueue a task for each delivery of ``ids`` (each not before its ETA, if any, on
    its role's queue, default ``deliveries``); on a broker error, make the rest due for
    the next dispatcher run at once."""
    sent = 0
    try:
        for delivery_id, eta, role in zip(
            ids, etas or [None] * len(ids), roles or ["deliveries"] * len(ids), strict=True
        ):
            enqueue_delivery(delivery_id, settings, eta, role)
            sent += 1
    except Exception as error:
        # The rest stay stamped; they are enqueued again after DELIVERY_REDISPATCH_SECONDS
        # unless this best-effort reset reaches PostgreSQL first.
        log_event(
            log,
            "delivery.enqueue_failed",
            logging.WARNING,
            error=describe_error(error),
            unsent=len(ids) - sent,
        )
        with contextlib.suppress(*DB_ERRORS):
            execute(UNDISPATCH, {"ids": list(ids[sent:])})
    if sent:
        log_event(log, "delivery.dispatched", logging.DEBUG, count=sent)
    return sent


def park_seconds(refused: GuardRefused, settings: Settings) -> float:
    """How long an endpoint refused by its open breaker parks: until the breaker can
    next admit a trial. While half-open (a trial in flight) that is the trial's end
    plus the open time its failure would start, not a few seconds: parked sooner,
    the whole backlog would be due again while the breaker is still refusing."""
    breaker = registry().breaker(refused.service)
    trial = settings.delivery_connect_timeout_seconds + settings.delivery_timeout_seconds
    now = breaker.registry.clock()
    return max(refused.retry_in, bp.next_trial_in(breaker.policy, breaker.known, now, trial))


# A message's state after an attempt, as the attempt's outcome in the metrics.
ATTEMPT_OUTCOMES = {"delivered": "delivered", "pending": "retry", "failed": "failed"}


@app.task(
    bind=True,
    base=GuardedTask,
    name=DELIVER_TASK,
    ignore_result=True,
    acks_late=True,
    # PostgreSQL failing before the POST: try again soon; whatever is still
    # undone after these is picked up again by the dispatcher.
    autoretry_for=DB_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=10,
)
def deliver(self, delivery_id: str) -> str | None:
    """Make one attempt of the delivery ``delivery_id`` if it is due and free."""
    settings = get_settings()
    claim_sent = time.monotonic()  # the claim's time on this clock (end_to_end.py)
    claimed = claim(delivery_id, settings)
    if claimed is None:
        return None  # delivered, failed, not due, or another worker has it
    in_flight.hold(self.request.id, claimed)  # released at once if a shutdown cuts it
    if claimed.disabled:
        fail_disabled(claimed)
        return "failed"
    if claimed.unrecorded_claims > settings.delivery_max_unrecorded_attempts:
        give_up(claimed, settings)
        return "failed"
    body = claimed.body.encode()
    try:
        url = normalise_url(claimed.url)  # a URL stored before the rule: sent or refused now
        destination = resolve_destination(url, allow_private=settings.allow_private_destinations)
    except DestinationError as error:
        started = datetime.now(UTC)
        result = AttemptResult(Outcome(error=f"DestinationRefused: {error}"), started, 0, None)
        return record_with_retries(claimed, result, settings)
    if (waiting := wait_for_slot(claimed, settings)) is not None:
        return waiting  # the endpoint's promised rate: it comes back at its send slot
    if claimed.lease_left() < settings.delivery_timeout_seconds + 1.0:
        # Resolving the host ate into the lease: sent now, the attempt could outlast it
        # and another worker send the message again while this one still is.
        execute(RELEASE, {"id": delivery_id, "token": claimed.token, "retry_in": 0.0})
        log_event(log, "delivery.lease_short", logging.WARNING, delivery_id=delivery_id)
        return "deferred"
    signed = webhook_headers(
        claimed.secret, claimed.message_id, int(time.time()), body, claimed.previous_secret
    )
    headers = {**claimed.headers, **signed}
    service = webhook_service(destination.host)
    try:
        with self.guard(service, defer=False) as call:
            result = post(
                http_client(),
                url,
                destination,
                headers,
                body,
                settings.delivery_timeout_seconds,
                settings.delivery_connect_timeout_seconds,
            )
            ended = time.monotonic()
            status = result.outcome.status_code
            call.record(failed=failed_status(status), timed_out=result.timed_out)
    except GuardRefused as refused:
        # Not an attempt: the receiver was spared. An open breaker parks the whole
        # endpoint until its next trial; a full limit frees a slot soon: come back then.
        if refused.reason == "open":
            return park(claimed, park_seconds(refused, settings), str(refused))
        execute(
            RELEASE,
            {"id": delivery_id, "token": claimed.token, "retry_in": max(0.0, refused.retry_in)},
        )
        log_event(
            log,
            "delivery.deferred",
            delivery_id=delivery_id,
            service=refused.service,
            retry_in=refused.retry_in,
            reason=refused.reason,
        )
        return "deferred"
    state = record_with_retries(claimed, result, settings)
    if call.trial and not call.failed and registry().breaker(service).state == bp.CLOSED:
        unpark(claimed.endpoint_id)  # its messages parked for a trial that succeeded
    if state is not None:
        record_delivery(
            ATTEMPT_OUTCOMES.get(state, state),
            result.duration_ms / 1000,
            service,
        )
    if state == "delivered" and claimed.app_id is not None:
        took = end_to_end_seconds(claimed.message_created_at, claimed.claimed_at, claim_sent, ended)
        if took is not None:
            record_end_to_end(claimed.app_id, took)
    return state
