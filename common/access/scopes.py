"""What a key may touch (pure rules, no I/O).

Scopes:

* ``admin``: everything, operator actions included;
* ``app:<app_id>``: everything inside that application;
* ``app:<app_id>:read``: reading inside that application.

A :class:`Principal` is who is asking: the bootstrap admin token
(``JENGA_ADMIN_TOKEN``) or one API key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ADMIN", "Principal", "Scope", "parse_scope"]

ADMIN = "admin"
_APP_SCOPE = re.compile(r"app:(?P<app>[^:\s]{1,255})(?P<read>:read)?")


@dataclass(frozen=True)
class Scope:
    """One parsed scope: ``app`` is None for ``admin``."""

    app: str | None
    read_only: bool = False

    def __str__(self) -> str:
        if self.app is None:
            return ADMIN
        return f"app:{self.app}" + (":read" if self.read_only else "")


def parse_scope(text: str) -> Scope:
    """The scope ``text`` names; ``ValueError`` saying what is allowed otherwise.
    The application may be named by id or uid here; keys store ids."""
    if text == ADMIN:
        return Scope(None)
    match = _APP_SCOPE.fullmatch(text)
    if match is None:
        raise ValueError(f"unknown scope {text!r}: use 'admin', 'app:<app>' or 'app:<app>:read'")
    return Scope(match["app"], read_only=match["read"] is not None)


@dataclass(frozen=True)
class Principal:
    """Who is asking: ``name`` is safe to log (a key's prefix, never the key)."""

    name: str
    scopes: tuple[Scope, ...]

    @property
    def is_admin(self) -> bool:
        return any(scope.app is None for scope in self.scopes)

    def may_read(self, app_id: str) -> bool:
        return self.is_admin or any(scope.app == app_id for scope in self.scopes)

    def may_write(self, app_id: str) -> bool:
        return self.is_admin or any(
            scope.app == app_id and not scope.read_only for scope in self.scopes
        )

    def owns(self, app_id: str) -> bool:
        """A key of that application with full scope (not read-only, not an admin):
        the one reader that sees its endpoints' custom header values."""
        return any(scope.app == app_id and not scope.read_only for scope in self.scopes)

    def readable_apps(self) -> set[str] | None:
        """The applications this principal may read; None for all of them."""
        return None if self.is_admin else {s.app for s in self.scopes if s.app is not None}
