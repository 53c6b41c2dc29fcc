"""``jenga alarms``: active alarms and recent set/clear events, from Redis."""

from __future__ import annotations

import argparse
import sys

from common.config import ConfigError, load_settings


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
