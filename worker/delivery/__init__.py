"""Level 5: webhook delivery tasks.

Two tasks, and PostgreSQL holds every decision between them (the outbox and
schedule columns are described in :mod:`common.delivery.models`):

* ``jenga.delivery.dispatch`` (beat, every ``DELIVERY_DISPATCH_INTERVAL_SECONDS``,
  on the default queue so a delivery backlog never delays it): claims the
  pending messages that are due with ``SELECT ... FOR UPDATE SKIP LOCKED``,
  stamps ``dispatched_at`` and enqueues one ``deliver`` task each. Messages
  whose task was enqueued long ago but never started (broker down when the API
  committed, a worker SIGKILLed with the task) are due again after
  ``DELIVERY_REDISPATCH_SECONDS``: a message the API accepted is never lost.
* ``jenga.delivery.deliver(message_id)`` (``{ns}.deliveries`` queue): takes a
  lease on the message (a duplicate task finds it and does nothing), signs and
  POSTs it through the host's guarded-call slot (breaker + AIMD limit), then
  records the attempt and the next state (:func:`common.delivery.retry_schedule.decide`)
  in one transaction guarded by the lease token.

A delivery is repeated only when a worker dies (or PostgreSQL fails) between
the POST and the recording of its result; it carries the same ``webhook-id``,
so receivers can drop it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.delivery.destinations import Destination, DestinationError, resolve_destination
from common.delivery.retry_schedule import Outcome, decide, parse_retry_after
from common.delivery.signing import webhook_headers
from common.health.fleet_metrics import record_delivery
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from common.support.per_process import PerProcess
from worker.app import app
from worker.guarded import GuardedTask, GuardRefused
from worker.schedule import DELIVERY_DISPATCH_TASK as DISPATCH_TASK

log = logging.getLogger("jenga.delivery")

DELIVER_TASK = "jenga.delivery.deliver"
EXCERPT_BYTES = 1024
EXCERPT_CHARS = 500
USER_AGENT = "Jenga-Webhooks/0.1"
# What the network or the receiver can do to a request (httpcore has no common base class).
HTTP_ERRORS = (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError,
               httpcore.UnsupportedProtocol, httpcore.ProxyError)
# Every psycopg failure, the pool's PoolTimeout (no connection in time) included.
DB_ERRORS = (psycopg.Error,)


def lease_seconds(settings: Settings) -> float:
    """How long a claim holds a message: longer than any one attempt can take
    (connect + send + receive, plus as long again to record it), so a live
    worker never loses its lease; a dead one's lease lapses this soon."""
    return settings.delivery_connect_timeout_seconds + 3 * settings.delivery_timeout_seconds


# --- per-process resources ---------------------------------------------------
# Built lazily in the process that uses them, and again after a fork: a pool
# child must not share its parent's sockets (common.support.per_process).


def postgres_conninfo(database_url: str) -> str:
    """``DATABASE_URL`` as libpq takes it (``postgresql+psycopg://`` is SQLAlchemy's spelling)."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else database_url


def _open_database() -> ConnectionPool:
    """This process's PostgreSQL connections for delivery.

    A psycopg pool, not the SQLAlchemy engine: a delivery is two statements,
    and SQLAlchemy's checkout, reset and per-statement machinery cost several
    times the statement itself on this hot path. Connections are in
    autocommit: every change below is one statement (several tables at once
    through data-modifying CTEs, which PostgreSQL runs atomically), so BEGIN
    and COMMIT would only add two round trips to each. Like ``make_engine``:
    nothing connects until first use (``min_size=0``) and connects give up
    after the check timeout. Unlike it, a connection is not pinged before
    each use (a round trip per statement); dead ones are found by
    :func:`execute` instead."""
    settings = get_settings()
    # Enough for every delivery thread (`-c`) to hold one connection at once.
    size = max(10, int(app.conf.worker_concurrency or 0))
    pool = ConnectionPool(
        postgres_conninfo(settings.database_url),
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "connect_timeout": max(1, round(settings.check_timeout_seconds)),
            "application_name": f"jenga-{settings.jenga_namespace}",
        },
        min_size=0,
        max_size=size,
        timeout=max(1.0, settings.check_timeout_seconds),
        max_lifetime=1800,
        name="jenga-delivery",
        open=False,
    )
    pool.open(wait=False)
    return pool


_database = PerProcess(_open_database)
database = _database.get


def execute(query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one statement on a pooled connection; its rows (none for a plain UPDATE)."""
    pool = database()
    try:
        with pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []
    except psycopg.OperationalError:
        # A PostgreSQL restart leaves every pooled connection dead. The pool drops
        # the one that failed; find the others now instead of failing one
        # statement on each. Every caller retries, so nothing is lost meanwhile.
        pool.check()
        raise


def _open_http_client() -> httpcore.ConnectionPool:
    """This process's keep-alive connections to receivers.

    httpcore, httpx's own transport, without httpx's client layer on top: that
    layer (URL and header models, cookie jar, redirect and auth machinery)
    cost more CPU than the request itself, and a delivery needs none of it. It
    follows no redirect (one could lead anywhere, past the destination
    check), keeps no cookies, and retries nothing (the schedule does)."""
    return httpcore.ConnectionPool(max_connections=200, max_keepalive_connections=50, retries=0)


_http_client = PerProcess(_open_http_client)
http_client = _http_client.get


# --- dispatch ------------------------------------------------------------------

CLAIM_DUE = (
    """
    UPDATE webhook_messages SET dispatched_at = now()
    WHERE id IN (
        SELECT id FROM webhook_messages
        WHERE status = 'pending' AND next_attempt_at <= now()
          AND (dispatched_at IS NULL OR dispatched_at < now() - make_interval(secs => %(redispatch)s))
          AND (claimed_until IS NULL OR claimed_until < now())
        ORDER BY next_attempt_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED)
    RETURNING id
    """
)


def enqueue_delivery(message_id: str, settings: Settings) -> None:
    deliver.apply_async((message_id,), queue=f"{settings.jenga_namespace}.deliveries")


@app.task(name=DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> int:
    """Enqueue every pending message that is due (and not being delivered)."""
    settings = get_settings()
    try:
        ids = [row["id"] for row in execute(CLAIM_DUE, {
            "redispatch": settings.delivery_redispatch_seconds, "batch": settings.delivery_dispatch_batch})]
    except DB_ERRORS as error:
        # PostgreSQL is down: the watchdog raises the alarm; the next run retries.
        log_event(log, "delivery.dispatch_failed", logging.WARNING, error=describe_error(error))
        return 0
    sent = 0
    try:
        for message_id in ids:
            enqueue_delivery(message_id, settings)
            sent += 1
    except Exception as error:
        # The rest stay stamped; they are enqueued again after DELIVERY_REDISPATCH_SECONDS
        # unless this best-effort reset reaches PostgreSQL first.
        log_event(log, "delivery.enqueue_failed", logging.WARNING, error=describe_error(error), unsent=len(ids) - sent)
        with contextlib.suppress(*DB_ERRORS):
            execute("UPDATE webhook_messages SET dispatched_at = NULL WHERE id = ANY(%(ids)s) AND status = 'pending'",
                    {"ids": list(ids[sent:])})
    if sent:
        log_event(log, "delivery.dispatched", logging.DEBUG, count=sent)
    return sent


# --- deliver -------------------------------------------------------------------

CLAIM_ONE = (
    """
    UPDATE webhook_messages m
    SET claim_token = %(token)s, claimed_until = now() + make_interval(secs => %(lease)s)
    FROM webhook_endpoints e
    WHERE m.id = %(id)s AND e.id = m.endpoint_id AND m.status = 'pending'
      AND m.next_attempt_at <= now()
      AND (m.claimed_until IS NULL OR m.claimed_until < now())
    RETURNING m.body, m.schedule_position, m.attempt_count, e.id AS endpoint_id, e.url, e.secret, e.disabled
    """
)

RELEASE = (
    """
    UPDATE webhook_messages
    SET next_attempt_at = now() + make_interval(secs => %(retry_in)s),
        dispatched_at = NULL, claim_token = NULL, claimed_until = NULL
    WHERE id = %(id)s AND claim_token = %(token)s
    """
)

# The attempt, the message's next state and (after a 410) the endpoint's
# disabling, in one statement: all or nothing, and one round trip. Nothing is
# written unless the lease token still matches.
RECORD = (
    """
    WITH message AS (
        UPDATE webhook_messages
        SET status = CAST(%(status)s AS varchar),
            attempt_count = attempt_count + 1,
            schedule_position = schedule_position + 1,
            next_attempt_at = CASE WHEN CAST(%(status)s AS varchar) = 'pending'
                                   THEN now() + make_interval(secs => %(retry_in)s) END,
            delivered_at = CASE WHEN CAST(%(status)s AS varchar) = 'delivered' THEN now() ELSE delivered_at END,
            last_error = CAST(%(last_error)s AS text),
            dispatched_at = NULL, claim_token = NULL, claimed_until = NULL
        WHERE id = %(id)s AND claim_token = %(token)s
        RETURNING id, endpoint_id, attempt_count
    ), attempt AS (
        INSERT INTO webhook_attempts (message_id, number, started_at, duration_ms, status_code, error, response_excerpt)
        SELECT id, attempt_count, CAST(%(started_at)s AS timestamptz), CAST(%(duration_ms)s AS integer),
               CAST(%(status_code)s AS integer), CAST(%(error)s AS text), CAST(%(excerpt)s AS text)
        FROM message
    ), endpoint AS (
        UPDATE webhook_endpoints SET disabled = true, disabled_reason = CAST(%(disabled_reason)s AS text), updated_at = now()
        WHERE CAST(%(disable_endpoint)s AS boolean) AND id = (SELECT endpoint_id FROM message)
    )
    SELECT attempt_count FROM message
    """
)


@dataclass(frozen=True)
class Claim:
    message_id: str
    token: str
    body: str
    schedule_position: int
    endpoint_id: str
    url: str
    secret: str
    disabled: bool


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    started_at: datetime
    duration_ms: int
    excerpt: str | None


def claim(message_id: str, settings: Settings) -> Claim | None:
    token = uuid.uuid4().hex
    rows = execute(CLAIM_ONE, {"id": message_id, "token": token, "lease": lease_seconds(settings)})
    if not rows:
        return None
    row = rows[0]
    return Claim(message_id, token, row["body"], row["schedule_position"], row["endpoint_id"], row["url"], row["secret"], row["disabled"])


def pinned_url(url: str, destination: Destination) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The request to make so the connection goes to the address the SSRF
    check approved, not to whatever DNS answers a moment later: the URL names
    that address; ``Host`` and TLS SNI (so certificate checks) keep the name."""
    parts = urlsplit(url)
    address = destination.addresses[0]
    host = f"[{address}]" if address.version == 6 else str(address)
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {"host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": destination.host} if parts.scheme == "https" else {}
    return pinned, headers, extensions


def post(client: httpcore.ConnectionPool, url: str, destination: Destination, headers: dict[str, str], body: bytes,
         total_timeout: float, connect_timeout: float) -> AttemptResult:
    """One POST; never raises for what the receiver or the network does."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    target, extra_headers, extensions = pinned_url(url, destination)
    extensions["timeout"] = {"connect": connect_timeout, "read": total_timeout, "write": total_timeout,
                             "pool": total_timeout}
    request_headers = {"user-agent": USER_AGENT, "content-type": "application/json", **headers, **extra_headers}
    try:
        with client.stream("POST", target, headers=list(request_headers.items()), content=body,
                           extensions=extensions) as response:
            chunks = bytearray()
            for chunk in response.iter_stream():
                chunks += chunk
                if len(chunks) >= EXCERPT_BYTES or time.perf_counter() - started > total_timeout:
                    break
    except HTTP_ERRORS as error:
        duration = time.perf_counter() - started
        return AttemptResult(Outcome(error=describe_error(error)), started_at, int(duration * 1000), None)
    duration = time.perf_counter() - started
    if duration > total_timeout:
        outcome = Outcome(error=f"Timeout: no complete answer within {total_timeout:g}s (HTTP {response.status})")
        return AttemptResult(outcome, started_at, int(duration * 1000), None)
    excerpt = bytes(chunks[:EXCERPT_BYTES]).decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    retry_after_header = next((value.decode("latin-1") for name, value in response.headers
                               if name.lower() == b"retry-after"), None)
    retry_after = parse_retry_after(retry_after_header, datetime.now(UTC))
    return AttemptResult(Outcome(status_code=response.status, retry_after=retry_after), started_at,
                         int(duration * 1000), excerpt)


# A message's state after an attempt, as the attempt's outcome in the metrics.
ATTEMPT_OUTCOMES = {"delivered": "delivered", "pending": "retry", "failed": "failed"}


def record(claimed: Claim, result: AttemptResult, settings: Settings) -> str | None:
    """Store the attempt and the message's next state, once: a second call with
    the same claim (a commit whose answer was lost) finds the token gone."""
    decision = decide(result.outcome, claimed.schedule_position, settings.delivery_retry_delays,
                      settings.delivery_retry_jitter)
    outcome = result.outcome
    last_error = None if outcome.succeeded else (outcome.error or f"HTTP {outcome.status_code}")
    rows = execute(RECORD, {
        "id": claimed.message_id, "token": claimed.token, "status": decision.status,
        "retry_in": decision.retry_in or 0.0, "last_error": last_error,
        "started_at": result.started_at, "duration_ms": result.duration_ms, "status_code": outcome.status_code,
        "error": outcome.error, "excerpt": result.excerpt,
        "disable_endpoint": decision.disable_endpoint, "disabled_reason": "the receiver answered 410 Gone",
    })
    if not rows:
        return None  # our lease expired and someone else took over
    number = rows[0]["attempt_count"]
    log_event(log, "delivery.attempt", message_id=claimed.message_id, endpoint_id=claimed.endpoint_id,
              attempt=number, status_code=outcome.status_code, error=outcome.error, duration_ms=result.duration_ms,
              result=decision.status, retry_in=decision.retry_in)
    if decision.disable_endpoint:
        log_event(log, "delivery.endpoint_disabled", logging.WARNING, endpoint_id=claimed.endpoint_id, reason="410 Gone")
    return decision.status


def record_with_retries(claimed: Claim, result: AttemptResult, settings: Settings) -> str | None:
    """Recording after the POST is the one step whose loss means a duplicate
    delivery, so a PostgreSQL blip is retried (backoff, full jitter) for up to
    ``DELIVERY_TIMEOUT_SECONDS`` (well inside the lease), before giving the
    message up to the sweeper."""
    deadline = time.monotonic() + settings.delivery_timeout_seconds
    attempt = 0
    while True:
        try:
            return record(claimed, result, settings)
        except DB_ERRORS as error:
            if time.monotonic() >= deadline:
                raise
            log_event(log, "delivery.record_retry", logging.WARNING, message_id=claimed.message_id,
                      error=describe_error(error))
            time.sleep(min(full_jitter_backoff(attempt, 0.2, 5.0), max(0.0, deadline - time.monotonic())))
            attempt += 1


def fail_disabled(claimed: Claim) -> None:
    execute("""UPDATE webhook_messages SET status = 'failed', last_error = 'endpoint disabled',
               next_attempt_at = NULL, claim_token = NULL, claimed_until = NULL
               WHERE id = %(id)s AND claim_token = %(token)s""",
            {"id": claimed.message_id, "token": claimed.token})
    log_event(log, "delivery.endpoint_disabled_skip", message_id=claimed.message_id, endpoint_id=claimed.endpoint_id)


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
def deliver(self, message_id: str) -> str | None:
    """Make one delivery attempt of ``message_id`` if it is due and free."""
    settings = get_settings()
    claimed = claim(message_id, settings)
    if claimed is None:
        return None  # delivered, failed, not due, or another worker has it
    if claimed.disabled:
        fail_disabled(claimed)
        return "failed"
    body = claimed.body.encode()
    try:
        destination = resolve_destination(claimed.url, allow_private=settings.allow_private_destinations)
    except DestinationError as error:
        started = datetime.now(UTC)
        result = AttemptResult(Outcome(error=f"DestinationRefused: {error}"), started, 0, None)
        return record_with_retries(claimed, result, settings)
    headers = webhook_headers(claimed.secret, claimed.message_id, int(time.time()), body)
    try:
        with self.guard(f"webhook:{destination.host}", defer=False) as call:
            result = post(http_client(), claimed.url, destination, headers, body, settings.delivery_timeout_seconds,
                          settings.delivery_connect_timeout_seconds)
            status = result.outcome.status_code
            call.record(failed=status is None or status >= 500 or status == 429)
    except GuardRefused as refused:
        # Not an attempt: the receiver was spared. Come back when the guard says.
        execute(RELEASE, {"id": message_id, "token": claimed.token, "retry_in": max(0.0, refused.retry_in)})
        log_event(log, "delivery.deferred", message_id=message_id, service=refused.service,
                  retry_in=refused.retry_in, reason=refused.reason)
        return "deferred"
    state = record_with_retries(claimed, result, settings)
    if state is not None:
        record_delivery(ATTEMPT_OUTCOMES.get(state, state), result.duration_ms / 1000, f"webhook:{destination.host}")
    return state
