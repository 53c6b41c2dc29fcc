"""``jenga config check`` and ``jenga config docs``: the settings, validated or as the
README's table."""

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
