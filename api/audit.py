"""``GET /v1/audit``: the audit log of admin actions, newest first, for ``admin`` keys.

Entries are written by :func:`common.access.audit.record` (keys, applications,
endpoint deletions, forced breakers; the ``jenga`` command line as ``cli``).
``?before=`` is the ``before`` of the previous page: keyset paging on the entry id,
so entries added meanwhile never shift a page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api.auth import ADMIN_ERRORS, require_admin
from api.tenancy import db_session
from common.access.audit import AuditEntry, entries

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    dependencies=[Depends(require_admin)],
    responses=ADMIN_ERRORS,
)


class AuditOut(BaseModel):
    id: int
    at: datetime = Field(description="When, on PostgreSQL's clock.")
    principal: str = Field(description="A key's prefix, `admin token`, or `cli`.")
    action: str = Field(description="`key.created`, `app.deleted`, `breaker.forced`, ...")
    target: str = Field(description="The id of what it was done to (a breaker's name).")
    details: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        return cls(
            id=entry.id,
            at=entry.at,
            principal=entry.principal,
            action=entry.action,
            target=entry.target,
            details=entry.details,
        )


class AuditList(BaseModel):
    data: list[AuditOut]
    before: int | None = Field(
        description="Pass as `?before=` for the next, older page; null on the last page."
    )


@router.get("", response_model=AuditList)
def list_audit(
    session: Session = Depends(db_session),
    limit: int = Query(default=100, ge=1, le=1000, description="Entries per page, 1 to 1000."),
    before: int | None = Query(default=None, ge=1, description="Entries older than this id."),
) -> AuditList:
    rows = entries(session, limit + 1, before)
    page = rows[:limit]
    more = len(rows) > limit
    return AuditList(data=[AuditOut.of(e) for e in page], before=page[-1].id if more else None)
