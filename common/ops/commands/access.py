"""``jenga keys`` and ``jenga apps``: API keys and applications, on PostgreSQL directly,
through the functions the API's ``/v1/keys`` and ``/v1/apps`` use (``common/access/``);
each change is audited as ``cli``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from common.config import ConfigError, load_settings

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session


def on_database(work: Callable[[Session], int]) -> int:
    """``work(session)`` on the configured PostgreSQL; one clear line, exit 1, when it
    cannot be reached or has not been migrated."""
    from psycopg import errors as pg_errors
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.orm import Session

    from common.connections.database import make_engine
    from common.connections.probes import describe_error

    try:
        settings = load_settings(wait_seconds=0)
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return 1
    engine = make_engine(settings, pool_size=1)
    try:
        with Session(engine, expire_on_commit=False) as session:
            return work(session)
    except DBAPIError as error:
        if isinstance(error.orig, pg_errors.UndefinedTable):
            advice = "the database is not migrated: run `alembic upgrade head`"
        elif error.connection_invalidated or isinstance(error.orig, pg_errors.OperationalError):
            advice = "PostgreSQL is unreachable; check DATABASE_URL"
        else:
            advice = "PostgreSQL refused it"
        print(f"{advice} ({describe_error(error.orig or error)})", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def keys_create(args: argparse.Namespace) -> int:
    """Print the new key alone on stdout (``KEY=$(jenga keys create ...)``), the rest on
    stderr."""
    from common.access import key_store
    from common.access.audit import CLI

    def create(session: Session) -> int:
        try:
            row, key = key_store.create_key(session, CLI, args.scope, args.name)
        except key_store.InvalidScope as error:
            print(f"{error} (see `jenga apps list`)", file=sys.stderr)
            return 2
        print(key)
        print(
            f"key {row.id} ({row.prefix}..., scopes {' '.join(row.scopes)}) created;"
            " it is shown only now: store it",
            file=sys.stderr,
        )
        return 0

    return on_database(create)


def keys_list(args: argparse.Namespace) -> int:
    import json

    from common.access import key_store

    def show(session: Session) -> int:
        rows = key_store.list_keys(session)
        if args.json:
            fields = ("id", "name", "prefix", "scopes", "created_at", "revoked_at")
            print(json.dumps([{f: getattr(r, f) for f in fields} for r in rows], default=str))
            return 0
        print(f"keys: {len(rows)}")
        for r in rows:
            revoked = f"revoked {_when(r.revoked_at)}" if r.revoked_at else "live"
            print(
                f"  {r.id}  {r.prefix}...  {' '.join(r.scopes):30} created {_when(r.created_at)}"
                f"  {revoked:27} {r.name}"
            )
        return 0

    return on_database(show)


def keys_revoke(args: argparse.Namespace) -> int:
    from common.access import key_store
    from common.access.audit import CLI

    def revoke(session: Session) -> int:
        try:
            key_store.revoke_key(session, CLI, args.key_id)
        except key_store.UnknownKey as error:
            print(f"{error} (see `jenga keys list`)", file=sys.stderr)
            return 1
        print(f"key {args.key_id}: revoked (API processes stop accepting it within 5 s)")
        return 0

    return on_database(revoke)


def apps_create(args: argparse.Namespace) -> int:
    from common.access import app_store
    from common.access.audit import CLI

    def create(session: Session) -> int:
        try:
            app = app_store.create_app(session, CLI, args.name, args.uid)
        except app_store.UidTaken as error:
            print(error, file=sys.stderr)
            return 1
        print(app.id)
        return 0

    return on_database(create)


def apps_list(args: argparse.Namespace) -> int:
    import json

    from common.access import app_store

    def show(session: Session) -> int:
        apps = app_store.list_apps(session)
        if args.json:
            fields = ("id", "uid", "name", "created_at")
            print(json.dumps([{f: getattr(a, f) for f in fields} for a in apps], default=str))
            return 0
        print(f"applications: {len(apps)}")
        for a in apps:
            print(f"  {a.id:36}  {a.uid or '-':20} created {_when(a.created_at)}  {a.name}")
        return 0

    return on_database(show)
