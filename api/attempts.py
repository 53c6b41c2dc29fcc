"""``…/messages/{id}/attempts`` and ``…/endpoints/{ep}/attempts`` (Svix's
``/attempt/msg/{id}`` and ``/attempt/endpoint/{id}``): the attempt log, a page at a
time, each attempt with its status code (or error) and duration.

* **A message's**: every attempt of its deliveries, newest first (``started_at``,
  then the attempt's id). They are few (its deliveries times their schedules), read
  through ``uq_webhook_deliveries_message_endpoint`` and ``ix_webhook_attempts_delivery``
  and sorted.
* **An endpoint's**: newest delivery first (``created_at``, then its id), and each
  delivery's attempts newest first (``number``). That is the order of the index path:
  ``ix_webhook_deliveries_endpoint_created`` walked backwards, into
  ``ix_webhook_attempts_delivery`` per delivery, so a page reads about ``limit`` rows
  however long the endpoint's history. A late retry of an old delivery is listed with
  that delivery, not on top: ordering by ``started_at`` would need the endpoint on
  every attempt row (a new column, and a backfill of the whole table). ``since`` /
  ``until`` narrow it to the deliveries created in the window, as the stats count them.

Both take ``status_code`` (:mod:`api.status_code_filter`): a code, a class or ``none``.
On an endpoint's list, a filter a 2xx cannot match (``5xx``, ``none``, ``404``) walks
``ix_webhook_deliveries_endpoint_failed_attempts`` instead, the endpoint's deliveries
with a failed attempt (a few percent of them): without it a rare answer was found by
reading the whole attempts table. A filter of successes walks the usual index, where
nearly every delivery matches.

Every call needs a key that may read the application; another application's message
or endpoint answers 404 (:mod:`api.tenancy`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session

from api.endpoints import endpoint_or_404
from api.errors import ApiError
from api.messages import AttemptOut
from api.pagination import ITERATOR, Keyset, decode, page, page_size, split
from api.search import TimeWindow, time_window
from api.status_code_filter import StatusCodes, status_code_filter
from api.tenancy import APP_ERRORS, current_app, db_session
from common.delivery.models import HAD_A_FAILED_ATTEMPT, App, Attempt, Delivery, Message

__all__ = ["endpoint_router", "message_router"]

# Mounted under …/messages and …/endpoints (api/app.py).
message_router = APIRouter(tags=["attempts"], responses=APP_ERRORS)
endpoint_router = APIRouter(tags=["attempts"], responses=APP_ERRORS)

BIGINT_MAX = 2**63 - 1


def _attempt_id(text: str) -> int:
    number = int(text)
    if not 0 < number <= BIGINT_MAX:
        raise ValueError(text)
    return number


def _delivery_attempt(text: str) -> tuple[str, int]:
    """``dlv_…/3``: a delivery's id and an attempt's number."""
    delivery_id, _, number = text.rpartition("/")
    if not delivery_id or not 0 < int(number) < 2**31:
        raise ValueError(text)
    return delivery_id, int(number)


MESSAGE_ATTEMPTS = Keyset("message-attempts", newest_first=True, parse_id=_attempt_id)
ENDPOINT_ATTEMPTS = Keyset("endpoint-attempts", newest_first=True, parse_id=_delivery_attempt)


class AttemptList(BaseModel):
    data: list[AttemptOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


@message_router.get("/{message_id}/attempts", response_model=AttemptList)
def list_message_attempts(
    message_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    endpoint_id: str | None = Query(
        default=None, description="Only the attempts of its delivery to this endpoint."
    ),
    status_code: StatusCodes | None = Depends(status_code_filter),
    limit: int = page_size(1000),
    iterator: str | None = ITERATOR,
) -> AttemptList:
    """Every attempt to send this message, newest first; `status_code`: those answered
    so (a code, a class such as `5xx`, or `none` for no HTTP answer)."""
    found = session.scalar(
        select(Message.id).where(Message.id == message_id, Message.app_id == app.id)
    )
    if found is None:
        raise ApiError(404, "message_not_found", f"no message {message_id!r}")
    query = (
        select(Attempt, Delivery.endpoint_id)
        .join(Delivery, Delivery.id == Attempt.delivery_id)
        .where(Delivery.message_id == found)
    )
    if endpoint_id is not None:
        query = query.where(Delivery.endpoint_id == endpoint_id)
    if status_code is not None:
        query = query.where(status_code.clause())
    query = page(query, MESSAGE_ATTEMPTS, Attempt.started_at, Attempt.id, iterator, limit)
    rows, next_iterator, done = split(
        list(session.execute(query)),
        limit,
        MESSAGE_ATTEMPTS,
        lambda row: (row.Attempt.started_at, row.Attempt.id),
    )
    return AttemptList(
        data=[AttemptOut.of(row.Attempt, found, row.endpoint_id) for row in rows],
        iterator=next_iterator,
        done=done,
    )


@endpoint_router.get("/{endpoint_id}/attempts", response_model=AttemptList)
def list_endpoint_attempts(
    endpoint_id: str,
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    window: TimeWindow = Depends(time_window),
    status_code: StatusCodes | None = Depends(status_code_filter),
    limit: int = page_size(1000),
    iterator: str | None = ITERATOR,
) -> AttemptList:
    """The attempts of this endpoint's deliveries: newest delivery first, each one's
    attempts newest first. `since`/`until`: of the deliveries created then;
    `status_code`: the attempts answered so (a code, a class such as `5xx`, or `none`)."""
    endpoint = endpoint_or_404(session, app, endpoint_id)
    query = (
        select(Attempt, Delivery.message_id, Delivery.created_at)
        .select_from(Delivery)
        .join(Attempt, Attempt.delivery_id == Delivery.id)
        # Only RECORD writes attempts, counting each: this skips, without a probe of
        # the attempts, the deliveries not tried yet (a paused endpoint's backlog).
        .where(Delivery.endpoint_id == endpoint.id, Delivery.attempt_count > 0)
    )
    if window.since is not None:
        query = query.where(Delivery.created_at >= window.since)
    if window.until is not None:
        query = query.where(Delivery.created_at < window.until)
    if status_code is not None:
        query = query.where(status_code.clause())
        if status_code.excludes_success:
            # Implied, and the predicate of the endpoint's index of those deliveries.
            query = query.where(text(HAD_A_FAILED_ATTEMPT))
    if iterator is not None:
        at, (delivery_id, number) = decode(iterator, ENDPOINT_ATTEMPTS)
        delivery = tuple_(Delivery.created_at, Delivery.id)
        query = query.where(
            # The first, implied by the second, bounds the walk of the delivery index.
            delivery <= tuple_(at, delivery_id),
            tuple_(Delivery.created_at, Delivery.id, Attempt.number)
            < tuple_(at, delivery_id, number),
        )
    query = query.order_by(
        Delivery.created_at.desc(), Delivery.id.desc(), Attempt.number.desc()
    ).limit(limit + 1)
    rows, next_iterator, done = split(
        list(session.execute(query)),
        limit,
        ENDPOINT_ATTEMPTS,
        lambda row: (row.created_at, f"{row.Attempt.delivery_id}/{row.Attempt.number}"),
    )
    return AttemptList(
        data=[AttemptOut.of(row.Attempt, row.message_id, endpoint.id) for row in rows],
        iterator=next_iterator,
        done=done,
    )
