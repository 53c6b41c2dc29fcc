"""Tasks for the GuardedTask tests and benchmarks, loaded by the worker with
``celery worker -I bench.bench_guarded_tasks`` (a module of its own: defining a
Celery task where pytest collects would load the settings at collection time)."""

from __future__ import annotations

import httpx

from common.config import get_settings
from common.redis.client import redis_for
from worker.app import app
from worker.guarded import GuardedTask

_redis = None


def redis():
    global _redis
    if _redis is None:
        _redis = redis_for(get_settings())
    return _redis


class Outcome:
    def __init__(self, status_code: int):
        self.status_code = status_code


@app.task(bind=True, base=GuardedTask, service="flaky", name="tests.guarded_call", max_retries=0)
def guarded_call(self, url: str, tag: str):
    """Call ``url``; note tag, status, retries and deferrals in ``{ns}:test:runs``."""
    response = httpx.get(url, timeout=2)
    redis().rpush(
        f"{get_settings().jenga_namespace}:test:runs",
        f"{tag}:{response.status_code}:{self.request.retries}:{self.deferrals()}",
    )
    return Outcome(response.status_code)  # 5xx counts as a failure of "flaky"


@app.task(bind=True, base=GuardedTask, service="noop", name="bench.guarded_noop")
def guarded_noop(self, key: str):
    redis().incr(key)


@app.task(bind=True, name="bench.plain_noop")
def plain_noop(self, key: str):
    redis().incr(key)


@app.task(bind=True, base=GuardedTask, name="bench.outage_call", max_retries=0)
def outage_call(self, url: str, service: str, key: str, guarded: bool, timeout: float):
    """Half the outage benchmark's tasks call a hanging service; the others a healthy one."""
    if guarded:
        try:
            with self.guard(service, defer=False) as call:
                response = httpx.get(url, timeout=timeout)
                call.record(failed=response.status_code >= 500)
        except Exception:  # refused or timed out: the point is how long a slot is held
            pass
    else:
        try:
            httpx.get(url, timeout=timeout)
        except Exception:
            pass
    redis().incr(f"{key}:{service}")
