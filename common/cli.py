"""``jenga``: the operators' command line.

    jenga config check      validate the environment, print effective settings (secrets masked); exit 0/1
    jenga config docs       print the README's settings table
    jenga run               run the whole local stack (embedded PostgreSQL/Redis when no URLs are set)

Each level adds its own commands (alarms, breakers, worker health) here.
"""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, describe_settings, load_settings, settings_table


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
    from common.localstack import run

    return run(processes=args.processes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jenga", description="Operate a Jenga deployment.")
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check or document the configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    config_commands.add_parser("check", help="validate the environment; exit 1 on any problem").set_defaults(func=config_check)
    config_commands.add_parser("docs", help="print the settings table (Markdown)").set_defaults(func=config_docs)

    run = commands.add_parser("run", help="run the local stack (web, worker, beat, flower)")
    run.add_argument("processes", nargs="*", default=["web", "worker", "beat", "flower"])
    run.set_defaults(func=run_stack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
