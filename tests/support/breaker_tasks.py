"""Tasks for the worker-level breaker tests (loaded with
``celery worker -I tests.support.breaker_tasks``; a module of its own, so pytest never imports the
Celery app at collection time).

``tests.breaker_call`` goes through a ``@circuit(cls=SharedCircuitBreaker)`` drop-in, not a
``GuardedTask``: it is the code path that used to build the process's breaker registry
without the notifier."""

from __future__ import annotations

from circuitbreaker import circuit

from common.guards.breaker.compat import SharedCircuitBreaker, SharedCircuitBreakerError
from worker.app import app


class ServiceDown(Exception):
    pass


@circuit(cls=SharedCircuitBreaker, name="plain-svc", failure_threshold=2)
def call_service(fail: bool) -> str:
    if fail:
        raise ServiceDown("plain-svc answered 503")
    return "ok"


@app.task(name="tests.breaker_call")
def breaker_call(fail: bool) -> str:
    try:
        return call_service(fail)
    except (ServiceDown, SharedCircuitBreakerError) as error:
        return f"refused or failed: {error}"
