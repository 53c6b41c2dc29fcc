"""``jenga beat health``: this host's beat from its heartbeat file, or (``--fleet``)
whether any beat runs the watchdogs, from Redis.

Exit codes: 0 healthy; 1 this beat's heartbeat is missing or stale (restart it), or
with ``--fleet`` no beat has sent the watchdogs for three intervals; 2 the settings
are invalid; 3 with ``--active``, live but not the beat that schedules; 4 with
``--fleet``, Redis cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys

from common.config import ConfigError, load_settings

EXIT_CONFIG, EXIT_REDIS = 2, 4


def beat_health(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(wait_seconds=0)
    except ConfigError as error:
        print(error.message(), file=sys.stderr)
        return EXIT_CONFIG
    if args.fleet:
        return _fleet(settings, args.json)
    import time

    from common.health.beat_probe import beat_name, probe_verdict
    from common.health.heartbeat import read_heartbeat_file

    name = args.name or beat_name(settings)
    payload = read_heartbeat_file(settings.heartbeat_dir, name)
    result = probe_verdict(
        payload, time.time(), settings.beat_lock_renew_seconds, active_only=args.active
    )
    if args.json:
        print(json.dumps({"name": name, "exit": result.exit_code, "heartbeat": payload}))
    print(f"{name}: {result.reason}", file=sys.stderr if result.exit_code else sys.stdout)
    return result.exit_code


def _fleet(settings, as_json: bool) -> int:
    import time

    import redis

    from common.connections.probes import describe_error
    from common.health.beat_store import BeatStore
    from common.health.beat_watch import BeatWatch, observe, stale_after
    from common.redis.client import redis_for

    try:
        record = BeatStore(redis_for(settings), settings.jenga_namespace).read()
    except (redis.RedisError, OSError) as error:
        print(
            f"cannot read the beat lease: Redis is unreachable ({describe_error(error)});"
            " check REDIS_URL",
            file=sys.stderr,
        )
        return EXIT_REDIS
    # One read, judged as by a watcher that has watched long enough.
    now = time.monotonic()
    limit = stale_after(
        settings.watchdog_interval_seconds,
        settings.beat_lock_ttl_seconds,
        settings.beat_lock_renew_seconds,
    )
    _, verdict = observe(BeatWatch(float("-inf")), record, True, now, limit)
    code = 0 if verdict.kind == "ok" else 1
    if as_json:
        print(json.dumps({"exit": code, "beat": record.to_dict() if record else None}))
    print(f"beat: {verdict.reason}", file=sys.stderr if code else sys.stdout)
    if record is not None and not as_json:
        for entry, age in record.to_dict()["runs_seconds_ago"].items():
            print(f"  {entry:24} sent {age:.1f}s ago")
    return code
