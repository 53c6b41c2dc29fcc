"""Level 5: the delivery leases this process holds, by task, so that an attempt
a shutdown cuts short hands its message on at once.

A cut attempt is never recorded, so without this its lease would hold the
message until it lapsed and the dispatcher sent it again after
``DELIVERY_REDISPATCH_SECONDS`` (five minutes). Releasing the lease makes the
message due now: the broker's requeued task, or the dispatcher's next run,
gives it to another worker within seconds. A lease already settled (the
attempt was recorded) has no token left to match, so releasing it changes
nothing.
"""

from __future__ import annotations

import logging
import threading

from celery import signals

from common.connections.probes import describe_error
from common.support.logs import log_event
from common.support.per_process import PerProcess
from worker.delivery.queries import RELEASE, Claim
from worker.delivery.resources import DB_ERRORS, execute
from worker.steps.drain import shutdown_cut

__all__ = ["InFlight", "hold", "release_all", "task_ended"]

log = logging.getLogger("jenga.delivery")


class InFlight:
    """The claims of this process's running delivery tasks, by task id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._claims: dict[str, Claim] = {}

    def hold(self, task_id: str, claimed: Claim) -> None:
        with self._lock:
            self._claims[task_id] = claimed

    def end(self, task_id: str) -> Claim | None:
        with self._lock:
            return self._claims.pop(task_id, None)

    def take_all(self) -> list[Claim]:
        with self._lock:
            claims, self._claims = list(self._claims.values()), {}
        return claims


_in_flight: PerProcess[InFlight] = PerProcess(InFlight)


def hold(task_id: str | None, claimed: Claim) -> None:
    """``task_id`` holds ``claimed`` until it ends (:func:`task_ended`)."""
    if task_id is not None:
        _in_flight.get().hold(task_id, claimed)


def task_ended(task_id: str, finished: bool) -> None:
    """A task ended; one that did not finish (cut by a shutdown) releases its claim."""
    claimed = _in_flight.get().end(task_id)
    if claimed is not None and not finished:
        release([claimed], "task cut short")


def release_all(why: str) -> int:
    """Release every claim this process holds (its attempts will not be recorded)."""
    claims = _in_flight.get().take_all()
    release(claims, why)
    return len(claims)


def release(claims: list[Claim], why: str) -> None:
    for claimed in claims:
        params = {"id": claimed.delivery_id, "token": claimed.token, "retry_in": 0.0}
        try:
            execute(RELEASE, params)
        except DB_ERRORS as error:
            # The lease lapses on its own; the dispatcher sends the message again then.
            log_event(
                log,
                "delivery.release_failed",
                logging.WARNING,
                delivery_id=claimed.delivery_id,
                error=describe_error(error),
            )
            continue
        log_event(
            log, "delivery.released", logging.WARNING, delivery_id=claimed.delivery_id, reason=why
        )


def _task_postrun(task_id: str | None = None, state: str | None = None, **_kwargs) -> None:
    # ``state`` is None when the task did not finish: SIGQUIT's SystemExit went through it.
    if task_id is not None:
        task_ended(task_id, finished=state is not None)


def _shutdown_cut(why: str = "shutdown", **_kwargs) -> None:
    release_all(why)


# Connected on import, which every worker process does (the app includes the tasks).
signals.task_postrun.connect(_task_postrun, weak=False, dispatch_uid="jenga-in-flight")
shutdown_cut.connect(_shutdown_cut, weak=False, dispatch_uid="jenga-in-flight")
