"""``jenga breakers``: every circuit breaker and limit from Redis, or force one breaker
(audited in PostgreSQL as ``cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from common.config import ConfigError, load_settings

if TYPE_CHECKING:
    from common.config import Settings


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
