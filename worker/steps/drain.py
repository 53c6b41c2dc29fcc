"""Level 5 in the worker: a deploy loses no in-flight work.

On SIGTERM (the whole process group from honcho, foreman or Heroku; PID 1
alone from Kubernetes) the worker stops taking tasks and lets the running ones
finish for up to ``SHUTDOWN_GRACE_SECONDS`` (Celery's warm shutdown, bounded
here). What is still running then is cut, and its delivery's lease released so
that another worker sends the message at once. The story is in the README's
operations guide, "Deploying without losing in-flight work".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from celery import bootsteps, signals
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.utils.dispatch import Signal
from celery.worker import state

from common.config import get_settings
from common.support.logs import log_event
from worker.steps.config import ConfigStep

__all__ = ["DrainStep", "shutdown_cut"]

log = logging.getLogger("jenga.worker")

# After the cut, how long the worker's own shutdown may take before the process
# leaves anyway: a stuck broker socket must not carry it past the platform's kill.
EXIT_BACKSTOP_SECONDS = 5.0
EXIT_CUT = 1  # the exit status of a worker that had to cut work short


def ignore_group_sigterm(**_kwargs) -> None:
    """In each prefork pool process: the group's SIGTERM is for the main
    process, which decides when its children stop (SIGQUIT, :meth:`DrainStep.cut`).
    What ``REMAP_SIGTERM`` does for Celery on Heroku, without the cold shutdown
    it also brings."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# Sent in the main process when the worker cuts what is still running, with
# ``why``; its receivers release what the tasks of this process hold
# (:mod:`worker.delivery.in_flight`). Prefork pool processes release their own
# as SIGQUIT's SystemExit ends their task.
shutdown_cut = Signal(name="jenga_shutdown_cut", providing_args={"why"})


class DrainStep(bootsteps.StartStopStep):
    """Owns ``worker.jenga_drain``: the grace, and the thread that ends it."""

    label = "jenga drain"
    requires = (ConfigStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.grace = get_settings().shutdown_grace_seconds
        self.worker = worker
        self.thread: threading.Thread | None = None
        self.cut_done = threading.Event()
        # Connected before the pool forks, so pool processes have them too.
        signals.worker_process_init.connect(
            ignore_group_sigterm, weak=False, dispatch_uid="jenga-drain-child"
        )
        signals.worker_shutting_down.connect(
            self.shutting_down, weak=False, dispatch_uid="jenga-drain-shutdown"
        )
        worker.jenga_drain = self

    def start(self, worker):
        if os.environ.get("REMAP_SIGTERM"):
            # Celery would make SIGTERM a cold shutdown: running tasks cut at once.
            log_event(
                log,
                "worker.remap_sigterm_set",
                logging.WARNING,
                hint="unset REMAP_SIGTERM: the worker drains on SIGTERM by itself",
            )
        # Celery's cold shutdown (SIGQUIT) cancels tasks with SIGTERM, which pool
        # processes now ignore: cut them first, the way a grace's end does.
        celery_handler = signal.getsignal(signal.SIGQUIT)

        def on_sigquit(signum, frame):
            self.cut("cold shutdown (SIGQUIT)")
            if callable(celery_handler):
                celery_handler(signum, frame)

        signal.signal(signal.SIGQUIT, on_sigquit)

    def shutting_down(self, sig=None, how=None, **_kwargs) -> None:
        """``worker_shutting_down``, in the main process's signal handler."""
        if how != "Warm" or self.thread is not None:
            return
        log_event(log, "worker.draining", signal=sig, grace_seconds=self.grace)
        self.thread = threading.Thread(target=self._end_grace, name="jenga-drain", daemon=True)
        self.thread.start()

    def _end_grace(self) -> None:
        # A daemon thread: when every task finishes first, the process exits
        # through Celery's warm shutdown and this thread with it.
        time.sleep(self.grace)
        self.cut(f"still running after SHUTDOWN_GRACE_SECONDS={self.grace:g}")
        time.sleep(EXIT_BACKSTOP_SECONDS)
        log_event(log, "worker.exit_forced", logging.ERROR, after_seconds=EXIT_BACKSTOP_SECONDS)
        _exit(EXIT_CUT)

    def cut(self, why: str) -> None:
        """End what is still running. A pool process is sent SIGQUIT: the
        SystemExit it raises ends its task there, which releases the task's lease
        (:mod:`worker.delivery.in_flight`); Celery requeues the message (the process was lost).
        A thread cannot be interrupted: its leases are released from here and
        the process leaves, the broker returning its unacknowledged messages."""
        if self.cut_done.is_set():
            return
        self.cut_done.set()
        busy = list(state.active_requests)
        if isinstance(self.worker.pool, PreforkPool):
            pids = {r.worker_pid for r in busy if r.worker_pid}
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)
            if busy:
                log_event(log, "worker.shutdown_cut", logging.WARNING, reason=why, tasks=len(busy))
            return
        if not busy:
            return
        shutdown_cut.send(sender=self.worker.hostname, why=why)
        log_event(log, "worker.shutdown_cut", logging.WARNING, reason=why, tasks=len(busy))
        _exit(EXIT_CUT)


def _exit(status: int) -> None:
    logging.shutdown()  # flush: os._exit skips it
    os._exit(status)
