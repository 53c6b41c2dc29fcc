"""Level 5, per-process resources of delivery: PostgreSQL connections (a
psycopg pool) and keep-alive HTTP connections to receivers.

Built lazily in the process that uses them, and again after a fork: a pool
child must not share its parent's sockets (:mod:`common.support.per_process`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from common.config import get_settings
from common.connections.database import libpq_options
from common.support.per_process import PerProcess
from worker.delivery.network import AttemptBackend

__all__ = [
    "DB_ERRORS",
    "DB_REFUSALS",
    "database",
    "execute",
    "http_client",
    "postgres_conninfo",
    "transaction",
]

# Every psycopg failure, the pool's PoolTimeout (no connection in time) included.
DB_ERRORS = (psycopg.Error,)
# What PostgreSQL refuses whatever the moment: values it cannot store.
DB_REFUSALS = (psycopg.DataError,)
# A delivery holds a connection for its claim and its record (a few ms each), never
# during the POST: 20 serve the 64 threads of the Procfile's worker with room to spare,
# and a fleet of such processes stays far below PostgreSQL's max_connections (100).
DB_CONNECTIONS = 20
# The longest statement (PARK of a 50,000-message backlog) takes seconds; past this one is
# cancelled and its task retried, as after any PostgreSQL error.
STATEMENT_TIMEOUT_MS = 60_000


def postgres_conninfo(database_url: str) -> str:
    """``DATABASE_URL`` as libpq takes it (``postgresql+psycopg://`` is SQLAlchemy's spelling)."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else database_url


def _limit_statements(conn: psycopg.Connection) -> None:
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


def _open_database() -> ConnectionPool:
    """This process's PostgreSQL connections for delivery.

    A psycopg pool, not the SQLAlchemy engine: a delivery is two statements,
    and SQLAlchemy's checkout, reset and per-statement machinery cost several
    times the statement itself on this hot path. Connections are in
    autocommit: every change below is one statement (several tables at once
    through data-modifying CTEs, which PostgreSQL runs atomically), so BEGIN
    and COMMIT would only add two round trips to each. Like ``make_engine``:
    nothing connects until first use (``min_size=0``), and connects and
    requests on a dead path give up after the check timeout
    (:func:`~common.connections.database.libpq_options`). Unlike it, a
    connection is not pinged before each use (a round trip per statement);
    dead ones are found by :func:`execute` instead."""
    settings = get_settings()
    pool = ConnectionPool(
        postgres_conninfo(settings.database_url),
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            **libpq_options(settings),
        },
        # The threads pool has no Celery time limit: no statement may outlast this.
        configure=_limit_statements,
        min_size=0,
        max_size=DB_CONNECTIONS,
        timeout=max(1.0, settings.check_timeout_seconds),
        max_lifetime=1800,
        name="jenga-delivery",
        open=False,
    )
    pool.open(wait=False)
    return pool


_database = PerProcess(_open_database)
database = _database.get


def execute(query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one statement on a pooled connection; its rows (none for a plain UPDATE)."""
    pool = database()
    try:
        with pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []
    except PoolTimeout:
        raise  # every connection busy, none dead: nothing to check
    except psycopg.OperationalError:
        # A PostgreSQL restart leaves every pooled connection dead. The pool drops
        # the one that failed; find the others now instead of failing one
        # statement on each. Every caller retries, so nothing is lost meanwhile.
        pool.check()
        raise


@contextmanager
def transaction() -> Iterator[psycopg.Connection]:
    """A pooled connection inside one transaction, committed when the block ends and
    rolled back if it raises: for the few changes that take more than one statement
    (a job's batch reads, locks, then writes). Dead connections are found as in
    :func:`execute`."""
    pool = database()
    try:
        with pool.connection() as conn, conn.transaction():
            yield conn
    except PoolTimeout:
        raise
    except psycopg.OperationalError:
        pool.check()
        raise


def _open_http_client() -> httpcore.ConnectionPool:
    """This process's keep-alive connections to receivers.

    httpcore, httpx's own transport, without httpx's client layer on top: that
    layer (URL and header models, cookie jar, redirect and auth machinery)
    cost more CPU than the request itself, and a delivery needs none of it. It
    follows no redirect (one could lead anywhere, past the destination
    check), keeps no cookies, and retries nothing (the schedule does). Every
    connection goes to the checked address only, and every socket operation
    ends by the attempt's deadline (:mod:`worker.delivery.network`)."""
    return httpcore.ConnectionPool(
        max_connections=200,
        max_keepalive_connections=50,
        retries=0,
        network_backend=AttemptBackend(),
    )


_http_client = PerProcess(_open_http_client)
http_client = _http_client.get
