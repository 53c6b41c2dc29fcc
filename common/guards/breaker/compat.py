"""Level 4: :class:`SharedCircuitBreaker`, a drop-in for the ``circuitbreaker``
package whose state is the fleet-wide :class:`~common.guards.breaker.breaker.SharedBreaker`.

``@circuit(cls=SharedCircuitBreaker, name="slack")`` works as with the package.
Each call keeps its own admission and start time: a decorated call in a call
object, a ``with breaker:`` block in a context variable (per thread and per
asyncio task, nested blocks innermost last), so threads entering the same
breaker at once never report one another's trial-call lease or latency.
"""

from __future__ import annotations

import functools
import math
import time
from asyncio import iscoroutinefunction
from contextvars import ContextVar
from dataclasses import dataclass, replace

from circuitbreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerMonitor

from common.guards.breaker import policy as bp
from common.guards.breaker.breaker import SharedBreaker
from common.guards.breaker.registry import BreakerRegistry, default_registry

__all__ = ["SharedCircuitBreaker", "SharedCircuitBreakerError"]


class SharedCircuitBreakerError(CircuitBreakerError):
    """Raised instead of calling a service whose shared breaker is open."""

    def __init__(self, circuit_breaker: SharedCircuitBreaker, retry_in: float):
        super().__init__(circuit_breaker)
        self.retry_in = retry_in

    def __str__(self) -> str:
        name = self._circuit_breaker.name
        return f'Circuit "{name}" OPEN (shared; retry in {self.retry_in:.1f} s)'


@dataclass(frozen=True)
class _Call:
    """One admitted call: what to report back, and since when it runs."""

    admission: bp.Admission
    started: float


class SharedCircuitBreaker(CircuitBreaker):
    """``@circuit(cls=SharedCircuitBreaker, name="slack")``: the ``circuitbreaker``
    API over a fleet-wide :class:`SharedBreaker`. ``failure_threshold`` and
    ``recovery_timeout`` override ``BREAKER_FAILURE_THRESHOLD`` and
    ``BREAKER_OPEN_SECONDS``; ``REGISTRY`` (class attribute) overrides the
    process's :func:`default_registry`."""

    REGISTRY: BreakerRegistry | None = None

    def __init__(
        self,
        failure_threshold=None,
        recovery_timeout=None,
        expected_exception=None,
        name=None,
        fallback_function=None,
    ):
        super().__init__(
            failure_threshold, recovery_timeout, expected_exception, name, fallback_function
        )
        self._overrides = {
            k: v
            for k, v in (
                ("failure_threshold", failure_threshold),
                ("open_seconds", recovery_timeout),
            )
            if v is not None
        }
        self._shared: SharedBreaker | None = None
        # The ``with breaker:`` blocks open in this context, innermost last.
        self._open_calls: ContextVar[tuple[_Call, ...]] = ContextVar(
            f"jenga-circuit-{id(self)}", default=()
        )

    @property
    def shared(self) -> SharedBreaker:
        # Asked again once the registry dropped it (idle): a dropped breaker is no
        # longer refreshed nor told about transitions.
        if self._shared is None or self._shared.evicted:
            registry = self.REGISTRY or default_registry()
            policy = registry.policy_for(str(self))
            if self._overrides:
                open_max = max(policy.open_max_seconds, self._overrides.get("open_seconds", 0))
                policy = replace(policy, open_max_seconds=open_max, **self._overrides)
            self._shared = registry.breaker(str(self), policy)
        return self._shared

    def decorate(self, function):
        if self._name is None:
            self._name = getattr(function, "__qualname__", function.__name__)
        CircuitBreakerMonitor.register(self)

        if iscoroutinefunction(function):

            @functools.wraps(function)
            async def awrapper(*args, **kwargs):
                with _Guarded(self) as fallback:
                    if fallback is not None:
                        return await fallback(*args, **kwargs)
                    return await function(*args, **kwargs)

            return awrapper

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with _Guarded(self) as fallback:
                if fallback is not None:
                    return fallback(*args, **kwargs)
                return function(*args, **kwargs)

        return wrapper

    def call(self, func, *args, **kwargs):
        with _Guarded(self) as fallback:
            return (fallback or func)(*args, **kwargs)

    def __enter__(self):
        admission = self._admit_or_raise()
        call = _Call(admission, time.perf_counter())
        self._open_calls.set((*self._open_calls.get(), call))

    def __exit__(self, exc_type, exc_value, _traceback):
        calls = self._open_calls.get()
        if calls:
            self._open_calls.set(calls[:-1])
            self._finish(calls[-1], exc_type, exc_value)
        return False

    def _admit_or_raise(self) -> bp.Admission:
        admission = self.shared.admit()
        if not admission.allowed:
            raise SharedCircuitBreakerError(self, admission.retry_in)
        return admission

    def _finish(self, call: _Call, exc_type, exc_value) -> None:
        failed = bool(exc_type) and self.is_failure(exc_type, exc_value)
        if failed:
            self._last_failure = exc_value
        self.shared.record(failed, time.perf_counter() - call.started, call.admission)

    # --- the circuitbreaker reporting API, answered from the shared state --------
    @property
    def state(self):
        return self.shared.state

    @property
    def open_remaining(self):
        remaining = self.shared.snapshot()["open_remaining_seconds"]
        return math.ceil(remaining) if remaining else 0

    @property
    def failure_count(self):
        return self.shared.known.consecutive

    @property
    def last_failure(self):
        return self._last_failure


class _Guarded:
    """One decorated call through a :class:`SharedCircuitBreaker`: admit, run, record.
    Yields the fallback function to call instead when the breaker refuses and one is set."""

    def __init__(self, breaker: SharedCircuitBreaker):
        self.breaker = breaker
        self.call: _Call | None = None

    def __enter__(self):
        admission = self.breaker.shared.admit()
        if not admission.allowed:
            if self.breaker.fallback_function:
                return self.breaker.fallback_function
            raise SharedCircuitBreakerError(self.breaker, admission.retry_in)
        self.call = _Call(admission, time.perf_counter())
        return None

    def __exit__(self, exc_type, exc_value, _traceback):
        if self.call is not None:
            self.breaker._finish(self.call, exc_type, exc_value)
        return False
