"""``jenga``: the operators' command line.

    jenga config check      validate the environment, print effective settings (secrets masked);
                            exit 0/1
    jenga config docs       print the README's settings table
    jenga worker health     exit 0/1 from this host's worker heartbeat (readiness; --live for
                            liveness)
    jenga beat health       exit 0/1/3 from this host's beat heartbeat (--active: the one that
                            schedules; --fleet: whether any beat runs the watchdogs, from Redis)
    jenga alarms            list active alarms and recent set/clear events (--json for machines)
    jenga breakers          list circuit breakers and concurrency limits (--json;
                            open/close/reset NAME)
    jenga keys              create (--scope ..., shown once), list or revoke API keys
    jenga apps              create or list applications
    jenga run               run the whole local stack (embedded PostgreSQL/Redis when no URLs
                            are set)

``keys`` and ``apps`` work on PostgreSQL directly, through the functions the API's
``/v1/keys`` and ``/v1/apps`` use (``common/access/``); each change is audited as ``cli``.

Each level adds its own commands (alarms, breakers, worker health) in
``common/ops/commands/``, one module per area; this module is the parser and ``main``.
"""

from __future__ import annotations

import argparse
import os
import sys

from common.ops.commands.access import apps_create, apps_list, keys_create, keys_list, keys_revoke
from common.ops.commands.alarms import list_alarms
from common.ops.commands.beat import beat_health
from common.ops.commands.breakers import breakers
from common.ops.commands.config import config_check, config_docs
from common.ops.commands.stack import run_stack
from common.ops.commands.worker import worker_health


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

    beat = commands.add_parser("beat", help="probe beat (this host's, or the fleet's)")
    beat_commands = beat.add_subparsers(dest="beat_command", required=True)
    beat_probe = beat_commands.add_parser(
        "health",
        help="exit 0 if this host's beat is live (1 dead or stuck, 2 bad settings, 3 standby"
        " with --active, 4 Redis unreachable with --fleet)",
    )
    beat_probe.add_argument("--name", help="the beat's BEAT_NAME; default beat@<this host>")
    beat_probe.add_argument(
        "--active", action="store_true", help="exit 3 unless this beat holds the lease"
    )
    beat_probe.add_argument(
        "--fleet",
        action="store_true",
        help="from Redis: exit 0 if some beat sent the watchdogs within three intervals",
    )
    beat_probe.add_argument("--json", action="store_true", help="print JSON as well")
    beat_probe.set_defaults(func=beat_health)

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
