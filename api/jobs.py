"""``/v1/apps/{app}/jobs``: the background jobs that re-queue failed deliveries, and
how far each has got.

Jobs are started by ``POST …/endpoints/{ep}/recover`` and ``POST …/messages/retry``
through :func:`start`, which stores the job and answers 202; the worker advances it
(:mod:`worker.jobs`). Idempotent twice over: the same ``Idempotency-Key`` returns the
job it first made (another request with it is 422), and the same request while an
identical job is queued or running returns that job (``Idempotent-Replayed: true``
both times). ``POST …/jobs/{id}/cancel`` stops a queued or running one (:func:`cancel_job`).

Every call needs a key that may read the application (starting one: that may write
it); see :mod:`api.tenancy`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError, error_responses
from api.pagination import ITERATOR, Keyset, page, page_size, split
from api.tenancy import APP_ERRORS, WRITE_ERRORS, current_app, db_session
from common.config import Settings
from common.delivery.models import (
    FAILED,
    JOB_CANCELLED,
    JOB_UNFINISHED,
    App,
    Endpoint,
    Job,
)
from common.delivery.recover_window import WindowRefused, checked_window, retention_of

__all__ = ["JOB_ERRORS", "JobOut", "refused", "router", "start"]

router = APIRouter(tags=["jobs"], responses=APP_ERRORS)
# 409: the endpoint is disabled.
JOB_ERRORS = {**WRITE_ERRORS, **error_responses(409)}


class JobFilter(BaseModel):
    """Which deliveries the job re-queues."""

    status: str = Field(description="Always `failed`: only failed deliveries are re-queued.")
    endpoint_id: str | None = Field(description="Its endpoint's only; null: every enabled one.")
    event_type: str | None = Field(description="Of messages of this type only; null: any.")
    since: datetime = Field(description="Created at or after this.")
    until: datetime = Field(description="Created before this (at most when the job was made).")


class JobOut(BaseModel):
    id: str
    kind: str = Field(description="`recover` (one endpoint) or `retry` (by filter).")
    status: str = Field(
        description="`queued`, `running`, `done`, `failed` or `cancelled` (the last three:"
        " finished)."
    )
    total: int | None = Field(
        description="Failed deliveries matching when the job started; null while queued."
    )
    done_count: int = Field(description="Deliveries re-queued so far.")
    error: str | None = Field(description="Why a `failed` job stopped.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    filter: JobFilter

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            total=job.total,
            done_count=job.done_count,
            error=job.error,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            filter=JobFilter(
                status=FAILED,
                endpoint_id=job.endpoint_id,
                event_type=job.event_type,
                since=job.since,
                until=job.until,
            ),
        )


class JobList(BaseModel):
    data: list[JobOut]
    iterator: str | None = Field(description="Pass as `?iterator=` for the next page.")
    done: bool = Field(description="True on the last page.")


def refused(field: str, message: str) -> RequestValidationError:
    """A 422 ``invalid_request`` naming ``field`` of the body, like the model's own checks."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _request_hash(kind: str, **fields: object) -> str:
    """The request's fingerprint; times in UTC, so ``Z`` and ``+02:00`` spellings agree."""
    fields = {
        name: value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        for name, value in fields.items()
    }
    canonical = json.dumps({"kind": kind, **fields}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unfinished_twin(session: Session, app: App, digest: str) -> Job | None:
    return session.scalars(
        select(Job).where(
            Job.app_id == app.id,
            Job.request_hash == digest,
            Job.status.in_(JOB_UNFINISHED),
        )
    ).first()


def _keyed(session: Session, app: App, key: str, digest: str) -> Job | None:
    job = session.scalars(
        select(Job).where(Job.app_id == app.id, Job.idempotency_key == key)
    ).first()
    if job is not None and job.request_hash != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )
    return job


def start(
    request: Request,
    response: Response,
    session: Session,
    app: App,
    *,
    kind: str,
    now: datetime,
    since: datetime | None,
    until: datetime | None,
    endpoint: Endpoint | None = None,
    event_type: str | None = None,
    idempotency_key: str | None = None,
) -> JobOut:
    """Store a job re-queuing the failed deliveries the filter names (``now``: the
    database's time; ``since`` None: as far back as the retention keeps), or answer
    with the one this request already made: the job it answered with
    ``idempotency_key``, else an identical job still unfinished. A window that cannot be
    recovered (:func:`~common.delivery.recover_window.checked_window`) is a 422 naming
    ``since`` or ``until``; a disabled ``endpoint``, 409."""
    settings: Settings = request.app.state.settings
    endpoint_id = endpoint.id if endpoint is not None else None
    digest = _request_hash(
        kind, endpoint_id=endpoint_id, event_type=event_type, since=since, until=until
    )
    replay = _keyed(session, app, idempotency_key, digest) if idempotency_key else None
    if replay is None:
        retention = retention_of(settings.message_retention_days, settings.attempt_retention_days)
        try:
            window = checked_window(
                now - retention if since is None else since,
                until,
                now,
                settings.message_retention_days,
                settings.attempt_retention_days,
            )
        except WindowRefused as problem:
            raise refused(problem.field, str(problem)) from None
        if endpoint is not None and endpoint.disabled:
            # Its deliveries would only fail again: Svix recovers enabled endpoints only too.
            raise ApiError(
                409, "endpoint_disabled", f"endpoint {endpoint.id} is disabled; enable it first"
            )
        replay = _unfinished_twin(session, app, digest)
    if replay is not None:
        response.headers["Idempotent-Replayed"] = "true"
        return JobOut.of(replay)
    job = Job(
        app_id=app.id,
        kind=kind,
        endpoint_id=endpoint_id,
        event_type=event_type,
        since=window.since,
        until=window.until,
        idempotency_key=idempotency_key,
        request_hash=digest,
        created_at=now,
        cursor_endpoint_id=endpoint_id or "",
        cursor_created_at=window.since,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # The same key, or an identical request, committed concurrently: answer with it.
        session.rollback()
        replay = (
            _keyed(session, app, idempotency_key, digest) if idempotency_key else None
        ) or _unfinished_twin(session, app, digest)
        if replay is None:
            raise
        response.headers["Idempotent-Replayed"] = "true"
        return JobOut.of(replay)
    session.refresh(job)
    return JobOut.of(job)


JOBS = Keyset("jobs", newest_first=True)


@router.get("", response_model=JobList)
def list_jobs(
    session: Session = Depends(db_session),
    app: App = Depends(current_app),
    limit: int = page_size(500),
    iterator: str | None = ITERATOR,
) -> JobList:
    """Newest first, a page at a time."""
    query = select(Job).where(Job.app_id == app.id)
    query = page(query, JOBS, Job.created_at, Job.id, iterator, limit)
    rows, next_iterator, done = split(list(session.scalars(query)), limit, JOBS)
    return JobList(data=[JobOut.of(j) for j in rows], iterator=next_iterator, done=done)


@router.get("/{job_id}", response_model=JobOut, responses=error_responses(404))
def get_job(
    job_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> JobOut:
    """The job and its progress."""
    job = session.get(Job, job_id)
    if job is None or job.app_id != app.id:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    return JobOut.of(job)


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={**WRITE_ERRORS, **error_responses(404, 409)},
)
def cancel_job(
    job_id: str, session: Session = Depends(db_session), app: App = Depends(current_app)
) -> JobOut:
    """Stop a `queued` or `running` job: it becomes `cancelled`, with `finished_at`, and
    re-queues nothing more. Deliveries it has already re-queued (`done_count`) stay
    re-queued and are sent as usual. A batch in progress finishes first (the answer
    waits for it, a fraction of a second; its deliveries are in `done_count`); none
    starts after. A finished job (`done`, `failed`, or `cancelled` already) is a 409
    `job_finished`; the same request may then start a new job."""
    # The worker's batch locks the job's row and checks its status and lease first, so
    # this UPDATE waits for a batch in progress and every later batch finds the job gone.
    # Clearing the lease voids the worker's other statements on it (they name the token).
    stopped = session.scalars(
        update(Job)
        .where(Job.id == job_id, Job.app_id == app.id, Job.status.in_(JOB_UNFINISHED))
        .values(status=JOB_CANCELLED, finished_at=func.now(), lease_token=None, leased_until=None)
        .returning(Job)
    ).first()
    session.commit()
    if stopped is not None:
        return JobOut.of(stopped)
    job = session.get(Job, job_id)
    if job is None or job.app_id != app.id:
        raise ApiError(404, "job_not_found", f"no job {job_id!r}")
    raise ApiError(
        409,
        "job_finished",
        f"job {job_id} is already {job.status}; only a queued or running job can be cancelled",
    )
