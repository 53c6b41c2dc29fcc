"""API keys in PostgreSQL, made, listed and revoked the same way by ``/v1/keys`` and
``jenga keys``; every creation and revocation is audited in its own transaction.

The key itself exists only in the answer of :func:`create_key`; the row holds its
hash and prefix (:mod:`common.access.keys`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.access.app_store import find_app
from common.access.audit import KEY_CREATED, KEY_REVOKED, record
from common.access.keys import key_hash, key_prefix, new_key
from common.access.scopes import Scope, parse_scope
from common.delivery.models import ApiKey, new_id

__all__ = [
    "InvalidScope",
    "UnknownKey",
    "create_key",
    "list_keys",
    "live_key",
    "revoke_key",
    "stored_scope",
]


class InvalidScope(ValueError):
    """A scope that is malformed or names no application."""


class UnknownKey(LookupError):
    def __init__(self, key_id: str):
        self.key_id = key_id
        super().__init__(f"no key {key_id!r}")


def stored_scope(session: Session, text: str) -> str:
    """``text`` as a key stores it (the application by id); :class:`InvalidScope` when it
    is malformed or names no application."""
    try:
        scope = parse_scope(text)
    except ValueError as error:
        raise InvalidScope(str(error)) from None
    if scope.app is None:
        return str(scope)
    app = find_app(session, scope.app)
    if app is None:
        raise InvalidScope(f"no application {scope.app!r}")
    return str(Scope(app.id, scope.read_only))


def create_key(
    session: Session, principal_name: str, scopes: Iterable[str], name: str = ""
) -> tuple[ApiKey, str]:
    """A new key with these scopes, committed: its row and the key, which is shown once."""
    stored = sorted({stored_scope(session, text) for text in scopes})
    if not stored:
        raise InvalidScope("a key needs at least one scope: 'admin', 'app:<app>' or ...:read")
    key = new_key()
    row = ApiKey(
        id=new_id("key"), name=name, prefix=key_prefix(key), key_hash=key_hash(key), scopes=stored
    )
    session.add(row)
    details = {"name": name, "prefix": row.prefix, "scopes": stored}
    record(session, principal_name, KEY_CREATED, row.id, details)
    session.commit()
    session.refresh(row)
    return row, key


def list_keys(session: Session, limit: int = 1000) -> list[ApiKey]:
    """Keys in creation order, revoked ones included."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(limit)))


def revoke_key(session: Session, principal_name: str, key_id: str) -> ApiKey:
    """Revoke key ``key_id`` (at PostgreSQL's time); revoking it again changes nothing and
    records nothing. :class:`UnknownKey` when there is none."""
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise UnknownKey(key_id)
    if row.revoked_at is None:
        row.revoked_at = session.scalar(select(func.now()))
        record(session, principal_name, KEY_REVOKED, row.id, {"prefix": row.prefix})
    session.commit()
    return row


def live_key(session: Session, key: str) -> ApiKey | None:
    """The unrevoked row of ``key``, if this database has one."""
    return session.scalars(
        select(ApiKey).where(ApiKey.key_hash == key_hash(key), ApiKey.revoked_at.is_(None))
    ).first()
