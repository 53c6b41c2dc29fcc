"""The SQLAlchemy engine. Creating it opens no connection: the pool connects on
first use, so boot never waits on PostgreSQL."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings

# Keepalive probes on an idle connection, one a second after the idle time: three
# unanswered and the kernel closes it (tcp_user_timeout cuts that shorter still).
KEEPALIVE_INTERVAL_SECONDS = 1
KEEPALIVE_COUNT = 3


def libpq_options(settings: Settings) -> dict[str, Any]:
    """libpq connect options that bound every PostgreSQL call on the client.

    PostgreSQL's statement_timeout runs on the server: on a partition (packets
    dropped, no RST) nothing comes back, and a socket waiting on a pooled
    connection would block until TCP gives up, for minutes. ``tcp_user_timeout``
    closes a connection whose sent data stays unacknowledged for the check
    timeout (a request on a dead path fails like a refused connect does), and
    keepalives find an idle dead connection within a check interval and a few
    seconds. A long statement is unaffected: the server's kernel acknowledges
    the query and the probes at once, however long the statement runs."""
    return {
        "connect_timeout": max(1, math.ceil(settings.check_timeout_seconds)),
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(settings.check_interval_seconds)),
        "keepalives_interval": KEEPALIVE_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": max(1000, round(settings.check_timeout_seconds * 1000)),
        "application_name": f"jenga-{settings.jenga_namespace}",
    }


def make_engine(settings: Settings, *, pool_size: int = 5) -> Engine:
    """An engine whose connects give up after the check timeout, and that
    notices dead pooled connections before handing them out."""
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=max(1.0, settings.check_timeout_seconds),
        connect_args=libpq_options(settings),
        hide_parameters=True,
    )


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
