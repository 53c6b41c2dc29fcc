"""``GuardedTask``: Celery tasks that call a service we do not control.

Before the call the task asks the service's fleet-wide circuit breaker
(:mod:`common.guards.breaker.registry`) and takes a slot of its adaptive concurrency
limit (:mod:`common.guards.limit.shared`); after it, the outcome goes to both::

    @app.task(bind=True, base=GuardedTask, service="slack")   # the whole run is guarded
    def post(self, text): ...

    @app.task(bind=True, base=GuardedTask)                       # the service is known at run time
    def deliver(self, message_id):
        with self.guard(f"webhook:{host}", defer=False) as call:  # GuardRefused instead of a retry
            response = http.post(...)
            call.record(failed=failed_status(response.status_code))  # common/guards/outcome.py

Refused (breaker open, or no slot free), the task does not wait in a worker
slot: it is sent again with a countdown (the breaker's remaining open time, or
a short pause for a full limit, plus jitter; never more than
``GUARD_MAX_COUNTDOWN_SECONDS``, well below the broker's 3600 s visibility
timeout). These deferrals are counted in the message header
``jenga_deferrals``, not in ``request.retries``: they do not spend the task's
``max_retries``. Flower shows them as RETRY with a :class:`GuardRefused` that
names the breaker; after ``GUARD_MAX_DEFERRALS`` the task fails with
:class:`ServiceUnavailableError`.

Exceptions escaping the guarded block count as failures when they are
instances of ``breaker_exceptions`` and not of ``breaker_ignore`` (class
attributes); a result with ``status_code`` 5xx or 429 counts as a failure of a
statically guarded task (:mod:`common.guards.outcome`). ``call.record(...)`` overrides both.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.exceptions import Retry

from common.config import get_settings
from common.guards.breaker.registry import BreakerRegistry, default_registry
from common.guards.limit.registry import current_limits, process_limits
from common.guards.limit.shared import SharedLimit
from common.guards.outcome import result_failed
from common.support.logs import log_event

log = logging.getLogger("jenga.guard")

DEFERRALS_HEADER = "jenga_deferrals"
LIMIT_RETRY_SECONDS = 0.5  # a full limit frees a slot as soon as any call ends: come back soon


class GuardRefused(Exception):
    """The service's breaker is open (``reason="open"``) or its limit is full (``"limit"``)."""

    def __init__(self, service: str, retry_in: float, reason: str, detail: str = ""):
        self.service = service
        self.retry_in = retry_in
        self.reason = reason
        self.detail = detail
        what = (
            f"circuit breaker {service!r} is open"
            if reason == "open"
            else f"concurrency limit of {service!r} is full"
        )
        super().__init__(f"{what}: retry in {retry_in:.1f} s{detail}")

    def __reduce__(self):
        return (type(self), (self.service, self.retry_in, self.reason, self.detail))


class ServiceUnavailableError(Exception):
    """Terminal: the task was deferred ``GUARD_MAX_DEFERRALS`` times and the service is still
    refused."""

    def __init__(self, service: str, reason: str, deferrals: int):
        self.service = service
        self.reason = reason
        self.deferrals = deferrals
        what = "circuit breaker open" if reason == "open" else "concurrency limit full"
        super().__init__(
            f"service {service!r} unavailable ({what}) after {deferrals} deferrals; giving up"
        )

    def __reduce__(self):
        return (type(self), (self.service, self.reason, self.deferrals))


class GuardedCall:
    """Handed to the guarded block, to report an outcome that is not an exception."""

    __slots__ = ("failed", "latency", "recorded", "timed_out", "trial")

    def __init__(self, trial: bool = False) -> None:
        self.trial = trial  # a half-open breaker's trial call: its success may close it
        self.failed = False
        self.latency: float | None = None
        self.recorded = False
        self.timed_out = False

    def record(self, failed: bool, latency: float | None = None, timed_out: bool = False) -> None:
        """``failed``: the service misbehaved (5xx, 429, garbage); ``latency``: seconds, default
        measured; ``timed_out``: it failed by running out of time (it weighs more in the
        breaker, ``BREAKER_TIMEOUT_WEIGHT``)."""
        self.failed = failed
        self.latency = latency
        self.recorded = True
        self.timed_out = timed_out and failed


# --- this process's breakers and limits -------------------------------------------


def registry() -> BreakerRegistry:
    """This process's breakers; opening and closing set and clear alarm ``breaker:<service>``
    (and notify people: the worker installs the notifier at start, see
    ``worker/steps/breakers.py``)."""
    return default_registry()


def _limit_from_settings(service: str) -> SharedLimit:
    return SharedLimit.from_settings(registry().client, get_settings(), service)


def limit_for(service: str) -> SharedLimit:
    """This process's handle on the service's shared limit (``LIMIT_*`` settings), kept
    by the process's limit registry (one sync thread; dropped after
    ``GUARD_IDLE_EVICT_SECONDS`` unused)."""
    return process_limits().get(service, _limit_from_settings)


def close_limits() -> None:
    """Stop this process's limit handles and give their idle slots back (tests, embedders)."""
    limits = current_limits()
    if limits is not None:
        limits.close()


class GuardedTask(Task):
    """Base class of tasks that call an external service; see the module doc."""

    service: str | None = None  # static service: the whole run is guarded
    max_deferrals: int | None = None  # default GUARD_MAX_DEFERRALS
    breaker_exceptions: tuple[type[BaseException], ...] = (
        Exception,
    )  # exceptions that count as failures
    breaker_ignore: tuple[type[BaseException], ...] = ()  # exceptions that pass through uncounted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.service:
            return super().__call__(*args, **kwargs)
        with self.guard(self.service) as call:
            # In a worker the tracer has already pushed the request; calling run()
            # directly saves Task.__call__'s second push (as Celery does for tasks
            # without a custom __call__).
            if self.request.called_directly:
                result = super().__call__(*args, **kwargs)
            else:
                result = self.run(*args, **kwargs)
            if not call.recorded and result_failed(result):
                call.record(failed=True)
            return result

    def counts_as_failure(self, error: BaseException) -> bool:
        if isinstance(error, Retry):
            return error.exc is not None and self.counts_as_failure(error.exc)
        if isinstance(error, (GuardRefused, *self.breaker_ignore)):
            return False
        return isinstance(error, self.breaker_exceptions)

    @contextmanager
    def guard(self, service: str, defer: bool = True):
        """Admit one call to ``service`` (breaker, then limit) and record its outcome."""
        breaker = registry().breaker(service)
        admission = breaker.admit()
        if not admission.allowed:
            self._refuse(service, admission.retry_in, "open", defer)
        lease = limit_for(service).try_acquire()
        # A half-open trial call goes out even with the limit full: there are only
        # BREAKER_HALF_OPEN_CALLS of them, and refusing would strand the lease.
        if lease is None and admission.probe is None:
            self._refuse(service, LIMIT_RETRY_SECONDS, "limit", defer)
        call = GuardedCall(trial=admission.probe is not None)
        started = time.perf_counter()
        counted = True
        try:
            yield call
        except BaseException as error:
            if not call.recorded:
                counted = self.counts_as_failure(error)
                call.failed = counted
            raise
        finally:
            latency = call.latency if call.latency is not None else time.perf_counter() - started
            if call.recorded or counted:
                breaker.record(call.failed, latency, admission, call.timed_out)
            # An uncounted outcome of a trial call leaves its lease to expire:
            # reporting success would close the breaker on no evidence.
            if lease is not None:
                lease.release(dropped=call.failed, latency=latency)

    # --- deferral -------------------------------------------------------------
    def deferrals(self) -> int:
        """How often this message was deferred by a guard so far."""
        request = self.request
        value = getattr(request, DEFERRALS_HEADER, None)
        if value is None:
            value = (getattr(request, "headers", None) or {}).get(DEFERRALS_HEADER, 0)
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            return 0

    def _refuse(self, service: str, retry_in: float, reason: str, defer: bool) -> None:
        if not defer:
            raise GuardRefused(service, retry_in, reason)
        settings = get_settings()
        done = self.deferrals()
        limit = settings.guard_max_deferrals if self.max_deferrals is None else self.max_deferrals
        if done >= limit:
            log_event(
                log,
                "guard.gave_up",
                logging.ERROR,
                task=self.name,
                task_id=self.request.id,
                service=service,
                reason=reason,
                deferrals=done,
            )
            raise ServiceUnavailableError(service, reason, done)
        jitter = random.uniform(0, min(5.0, 0.1 * retry_in + 0.5))
        countdown = min(settings.guard_max_countdown_seconds, max(0.0, retry_in) + jitter)
        refusal = GuardRefused(service, retry_in, reason, f" (deferral {done + 1} of {limit})")
        log_event(
            log,
            "guard.deferred",
            task=self.name,
            task_id=self.request.id,
            service=service,
            reason=reason,
            countdown=round(countdown, 3),
            deferral=done + 1,
        )
        raise self._defer(countdown, refusal, done + 1)

    def _defer(self, countdown: float, refusal: GuardRefused, deferrals: int) -> BaseException:
        request = self.request
        if request.called_directly:
            return refusal
        headers = dict(getattr(request, "headers", None) or {})
        headers[DEFERRALS_HEADER] = deferrals
        # retries stays as it was: a deferral is not an attempt.
        signature = self.signature_from_request(
            request, None, None, countdown=countdown, retries=request.retries, headers=headers
        )
        signature.apply_async()
        return Retry(str(refusal), exc=refusal, when=countdown, sig=signature)
