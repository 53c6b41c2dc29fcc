"""Applications in PostgreSQL, made, listed and deleted the same way by ``/v1/apps``
and ``jenga apps``; every creation and deletion is audited in its own transaction."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.access.audit import APP_CREATED, APP_DELETED, record
from common.delivery.models import DEFAULT_APP_ID, OPERATIONS_APP_ID, App, new_id

__all__ = [
    "DefaultAppKept",
    "UidTaken",
    "commit_unique_uid",
    "create_app",
    "delete_app",
    "find_app",
    "list_apps",
]


class UidTaken(ValueError):
    """Another application has this ``uid``."""

    def __init__(self, uid: str | None):
        self.uid = uid
        super().__init__(f"an application with uid {uid!r} exists")


class DefaultAppKept(ValueError):
    """The default application and the operations application cannot be deleted."""

    def __init__(self, app_id: str = DEFAULT_APP_ID) -> None:
        super().__init__(
            "the default application serves /v1/endpoints and /v1/messages"
            if app_id == DEFAULT_APP_ID
            else f"{app_id} holds the fleet's operational endpoints"
        )


def find_app(session: Session, ref: str) -> App | None:
    """The application whose id or uid is ``ref``."""
    return session.scalars(select(App).where(or_(App.id == ref, App.uid == ref))).first()


def commit_unique_uid(session: Session, uid: str | None) -> None:
    """Commit; :class:`UidTaken` (rolled back) when ``uid`` is another application's."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise UidTaken(uid) from None


def create_app(session: Session, principal_name: str, name: str, uid: str | None = None) -> App:
    app = App(id=new_id("app"), name=name, uid=uid)
    session.add(app)
    record(session, principal_name, APP_CREATED, app.id, {"name": name, "uid": uid})
    commit_unique_uid(session, uid)
    session.refresh(app)
    return app


def list_apps(session: Session, readable: set[str] | None = None, limit: int = 1000) -> list[App]:
    """Applications in creation order; only those in ``readable`` unless it is None."""
    query = select(App).order_by(App.created_at, App.id).limit(limit)
    if readable is not None:
        query = query.where(App.id.in_(readable))
    return list(session.scalars(query))


def delete_app(session: Session, principal_name: str, app: App) -> None:
    """Delete ``app`` with its endpoints, messages and attempts."""
    if app.id in (DEFAULT_APP_ID, OPERATIONS_APP_ID):
        raise DefaultAppKept(app.id)
    record(session, principal_name, APP_DELETED, app.id, {"name": app.name, "uid": app.uid})
    session.delete(app)
    session.commit()
