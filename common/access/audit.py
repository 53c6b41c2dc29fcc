"""The audit log: who did which admin action to what, and when (PostgreSQL's clock).

:func:`record` is the one way in. The API routes and the ``jenga`` commands call it
inside the transaction of the change itself, so a change is never stored without
its entry, nor an entry without its change. A forced breaker lives in Redis, not in
PostgreSQL: :func:`record_alone` writes its entry afterwards in a transaction of its
own and, with PostgreSQL unreachable, logs the entry (``audit.unrecorded``) rather
than refuse an operator in an incident.

``principal`` is a key's prefix, ``admin token`` or ``cli``: never a secret.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Engine, Identity, String, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from common.connections.probes import describe_error
from common.delivery.models import Base
from common.support.logs import log_event

__all__ = [
    "APP_CREATED",
    "APP_DELETED",
    "BREAKER_FORCED",
    "CLI",
    "ENDPOINT_DELETED",
    "ENDPOINT_SECRET_ROTATED",
    "EVENT_TYPE_ARCHIVED",
    "EVENT_TYPE_CREATED",
    "EVENT_TYPE_DELETED",
    "EVENT_TYPE_UPDATED",
    "MESSAGE_CONTENT_EXPUNGED",
    "KEY_CREATED",
    "KEY_REVOKED",
    "AuditEntry",
    "entries",
    "record",
    "record_alone",
]

log = logging.getLogger("jenga.audit")

CLI = "cli"  # the principal of the `jenga` command line (it works on PostgreSQL directly)

KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
APP_CREATED = "app.created"
APP_DELETED = "app.deleted"
ENDPOINT_DELETED = "endpoint.deleted"
ENDPOINT_SECRET_ROTATED = "endpoint.secret_rotated"
BREAKER_FORCED = "breaker.forced"
MESSAGE_CONTENT_EXPUNGED = "message.content_expunged"
EVENT_TYPE_CREATED = "event_type.created"
EVENT_TYPE_UPDATED = "event_type.updated"
EVENT_TYPE_ARCHIVED = "event_type.archived"
EVENT_TYPE_DELETED = "event_type.deleted"


class AuditEntry(Base):
    """One admin action. No foreign keys: the entry outlives what it names."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    principal: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


def record(
    session: Session,
    principal_name: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add the entry to ``session``'s transaction; the caller's commit stores it with the
    change it describes."""
    entry = AuditEntry(principal=principal_name, action=action, target=target, details=details)
    session.add(entry)
    return entry


def record_alone(
    engine: Engine,
    principal_name: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> bool:
    """Store the entry of a change made outside PostgreSQL; False (and the entry logged
    at ERROR) when PostgreSQL refuses it."""
    try:
        with Session(engine) as session:
            record(session, principal_name, action, target, details)
            session.commit()
    except SQLAlchemyError as error:
        log_event(
            log,
            "audit.unrecorded",
            logging.ERROR,
            principal=principal_name,
            action=action,
            target=target,
            details=details,
            error=describe_error(error),
        )
        return False
    return True


def entries(session: Session, limit: int, before: int | None = None) -> list[AuditEntry]:
    """The newest ``limit`` entries (by id, the order they were written), older than entry
    ``before`` when given."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))
