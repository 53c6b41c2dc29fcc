"""``jenga worker health``: readiness or liveness from this host's worker heartbeat."""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, load_settings


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
