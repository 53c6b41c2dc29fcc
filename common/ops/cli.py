"""``jenga``: the operators' command line.

    jenga config check      validate the environment, print effective settings (secrets masked);
                            exit 0/1
    jenga config docs       print the README's settings table
    jenga worker health     exit 0/1 from this host's worker heartbeat (readiness; --live for
                            liveness)
    jenga alarms            list active alarms and recent set/clear events (--json for machines)
    jenga breakers          list circuit breakers and concurrency limits (--json;
                            open/close/reset NAME)
    jenga keys              create (--scope ..., shown once), list or revoke API keys
    jenga apps              create or list applications
    jenga run               run the whole local stack (embedded PostgreSQL/Redis when no URLs
                            are set)

``keys`` and ``apps`` work on PostgreSQL directly, through the functions the API's
``/v1/keys`` and ``/v1/apps`` use (``common/access/``); each change is audited as ``cli``.

Each level adds its own commands (alarms, breakers, worker health) here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from common.config import ConfigError, describe_settings, load_settings, settings_table

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

    from common.config import Settings


def config_check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return 1
    width = max(len(name) for name in describe_settings(settings))
    for name, value in describe_settings(settings).items():
        print(f"{name.ljust(width)}  {value}")
    print("configuration OK", file=sys.stderr)
    return 0


def config_docs(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def run_stack(args: argparse.Namespace) -> int:
    from common.ops.localstack import run

    return run(processes=args.processes)


def worker_health(args: argparse.Namespace) -> int:
    """Exit 0 when the worker's heartbeat says ready (or live, with --live); 1 otherwise."""
    import time

    from common.health.heartbeat import default_hostname, read_heartbeat_file, verdict

    try:
        settings = load_settings(wait_seconds=0)
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return 1
    hostname = args.hostname or default_hostname()
    payload = read_heartbeat_file(settings.heartbeat_dir, hostname)
    result = verdict(payload, time.time(), settings.heartbeat_interval_seconds, live_only=args.live)
    print(f"{hostname}: {result.reason}", file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def list_alarms(args: argparse.Namespace) -> int:
    """Print active alarms and recent history from Redis; exit 1 if it cannot be read."""
    import json
    from datetime import UTC, datetime

    import redis

    from common.alarms.store import AlarmStore
    from common.connections.probes import describe_error
    from common.redis.client import redis_for

    try:
        settings = load_settings(wait_seconds=0)
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return 1
    store = AlarmStore(
        redis_for(settings), settings.jenga_namespace, clear_after=settings.alarm_clear_after
    )
    try:
        active, history = store.active(), store.history(args.history)
    except redis.RedisError as error:
        print(
            f"cannot read alarms: Redis is unreachable ({describe_error(error)}); check REDIS_URL",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps({"active": active, "history": history}, indent=2))
        return 0

    def when(timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")

    print(f"active alarms: {len(active)}")
    for alarm in active:
        error = alarm["last_check"].get("error")
        print(
            f"  {alarm['severity'].upper():8} {alarm['id']:20} since {when(alarm['set_at'])}"
            f"  {alarm['description']}" + (f" ({error})" if error else "")
        )
    print(f"recent events (newest first, up to {args.history}):")
    for event in history:
        print(
            f"  {when(event['at'])}  {event['kind']:5} {event['alarm_id']:20}"
            f" {event['description']}"
        )
    return 0


def breakers(args: argparse.Namespace) -> int:
    """List every breaker and limit from Redis, or force one breaker; exit 1 if Redis cannot be
    reached."""
    import json

    import redis

    from common.connections.probes import describe_error
    from common.guards.force import (
        InvalidBreakerName,
        UnknownBreaker,
        check_breaker_name,
        force_breaker,
    )
    from common.guards.overview import fleet_overview
    from common.redis.client import redis_for

    if args.action and not args.name:
        print(
            f"jenga breakers {args.action} NAME: say which breaker (see `jenga breakers`)",
            file=sys.stderr,
        )
        return 2
    if args.action:
        try:  # before the settings: a bad name is a usage error, whatever the configuration
            check_breaker_name(args.name)
        except InvalidBreakerName as error:
            print(error, file=sys.stderr)
            return 2
    try:
        settings = load_settings(wait_seconds=0)
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return 1
    client = redis_for(settings)
    try:
        if args.action:
            try:
                view = force_breaker(client, settings, args.name, args.action)
            except UnknownBreaker as error:  # as the API's 404
                print(f"{error} (see `jenga breakers`)", file=sys.stderr)
                return 1
            print(f"breaker {args.name}: {view['state']}")
            _audit_breaker(settings, args.name, args.action)
            return 0
        view = fleet_overview(client, settings.jenga_namespace)
    except redis.RedisError as error:
        print(
            f"cannot read breakers: Redis is unreachable ({describe_error(error)});"
            " check REDIS_URL. "
            "Workers are running per-process breakers (fallback) until it answers.",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"breakers: {len(view['breakers'])}")
    for b in view["breakers"]:
        state = b["state"] + (" (forced)" if b["forced"] else "")
        if b["open_remaining_seconds"] is not None:
            state += f" {b['open_remaining_seconds']:.1f}s left"
        window = b["window"]
        print(
            f"  {b['name']:30} {state:22} trips={b['total_trips']}"
            f" consecutive={b['consecutive_failures']} "
            f"window={window['failures']}/{window['calls']} failed,"
            f" {window['slow']} slow  {b['reason']}"
        )
    print(f"limits: {len(view['limits'])}")
    for limit in view["limits"]:
        print(
            f"  {limit.get('service', '?'):30} limit={limit.get('limit')}"
            f" in_flight={limit.get('in_flight')}"
        )
    return 0


def _audit_breaker(settings: Settings, name: str, action: str) -> None:
    from common.access.audit import BREAKER_FORCED, CLI, record_alone
    from common.connections.database import make_engine

    engine = make_engine(settings, pool_size=1)
    try:
        if not record_alone(engine, CLI, BREAKER_FORCED, name, {"action": action}):
            print(
                f"warning: breaker {name} was forced, but its audit entry could not be stored"
                " in PostgreSQL; check DATABASE_URL",
                file=sys.stderr,
            )
    finally:
        engine.dispose()


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jenga", description="Operate a Jenga deployment.")
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check or document the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser(
        "check", help="validate the environment; exit 1 on any problem"
    ).set_defaults(func=config_check)
    config_commands.add_parser("docs", help="print the settings table (Markdown)").set_defaults(
        func=config_docs
    )

    worker = commands.add_parser("worker", help="probe a worker on this host")
    worker_commands = worker.add_subparsers(dest="worker_command", required=True)
    health = worker_commands.add_parser(
        "health", help="exit 0 if the worker's heartbeat is fresh and it is connected to the broker"
    )
    health.add_argument(
        "--hostname", help="the worker's node name (-n); default celery@<this host>"
    )
    health.add_argument(
        "--live", action="store_true", help="liveness only: a fresh heartbeat, broker or not"
    )
    health.set_defaults(func=worker_health)

    alarms = commands.add_parser("alarms", help="list active alarms and recent set/clear events")
    alarms.add_argument(
        "--history", type=int, default=20, metavar="N", help="how many recent events (default 20)"
    )
    alarms.add_argument("--json", action="store_true", help="print JSON instead of text")
    alarms.set_defaults(func=list_alarms)

    breaker = commands.add_parser(
        "breakers", help="list circuit breakers and limits, or force a breaker"
    )
    breaker.add_argument(
        "action", nargs="?", choices=["open", "close", "reset"], help="force a breaker (needs NAME)"
    )
    breaker.add_argument("name", nargs="?", help="the breaker (service) to force")
    breaker.add_argument("--json", action="store_true", help="print JSON instead of text")
    breaker.set_defaults(func=breakers)

    keys = commands.add_parser("keys", help="create, list or revoke API keys (in PostgreSQL)")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create_key = keys_commands.add_parser("create", help="make a key; it is printed only now")
    create_key.add_argument(
        "--scope",
        action="append",
        required=True,
        help="admin, app:<app> or app:<app>:read (the app by id or uid); repeat for more",
    )
    create_key.add_argument("--name", default="", help="free text for people")
    create_key.set_defaults(func=keys_create)
    list_keys = keys_commands.add_parser("list", help="every key: prefix, scopes, revoked or not")
    list_keys.add_argument("--json", action="store_true", help="print JSON instead of text")
    list_keys.set_defaults(func=keys_list)
    revoke = keys_commands.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id", metavar="ID")
    revoke.set_defaults(func=keys_revoke)

    apps = commands.add_parser("apps", help="create or list applications (in PostgreSQL)")
    apps_commands = apps.add_subparsers(dest="apps_command", required=True)
    create_app = apps_commands.add_parser("create", help="make an application; prints its id")
    create_app.add_argument("name")
    create_app.add_argument("--uid", help="your own id for it (unique), usable as its id")
    create_app.set_defaults(func=apps_create)
    list_apps = apps_commands.add_parser("list", help="every application")
    list_apps.add_argument("--json", action="store_true", help="print JSON instead of text")
    list_apps.set_defaults(func=apps_list)

    run = commands.add_parser("run", help="run the local stack (web, worker, ops, beat, flower)")
    run.add_argument("processes", nargs="*", default=["web", "worker", "ops", "beat", "flower"])
    run.set_defaults(func=run_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `jenga alarms | head`: the reader has gone, which is not an error.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
