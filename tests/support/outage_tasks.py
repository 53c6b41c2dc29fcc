"""Tasks for the outage tests (the test creates table ``outage_{ns}``) (loaded with
``celery worker -I tests.support.outage_tasks``): ``record`` needs PostgreSQL and runs on
``{ns}.deliveries``; ``mark`` needs only Redis; ``hold`` keeps a pool slot busy."""

from __future__ import annotations

import time

from sqlalchemy import text

from common.config import get_settings
from common.connections.database import make_engine
from common.connections.dependency import retry_options
from common.redis.client import redis_for
from worker.app import app

_engine = None


def engine():
    global _engine
    if _engine is None:
        _engine = make_engine(get_settings(), pool_size=2)
    return _engine


@app.task(name="tests.record", **retry_options(base=1, cap=2))
def record(n: int, hold_seconds: float = 0.0) -> None:
    table = f"outage_{get_settings().jenga_namespace}"
    with engine().begin() as conn:
        if hold_seconds:
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": hold_seconds})
        conn.execute(text(f"INSERT INTO {table} VALUES (:n) ON CONFLICT DO NOTHING"), {"n": n})


@app.task(name="tests.mark")
def mark(n: int) -> None:
    settings = get_settings()
    redis_for(settings).sadd(f"{settings.jenga_namespace}:test:marked", n)


@app.task(name="tests.hold")
def hold(seconds: float) -> None:
    time.sleep(seconds)
