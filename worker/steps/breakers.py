"""Level 4 hooks in the worker: breaker alarms notify people, and a process
whose breakers fall back to per-process state says so."""

from __future__ import annotations

import functools
import os

from celery import bootsteps

from common.alarms.dispatch import notify
from common.config import get_settings
from common.guards.breaker.hooks import set_alarm_notifier, set_fallback_listener
from common.health.heartbeat import (
    breakers_summary,
    clear_breaker_fallback,
    mark_breaker_fallback,
    read_breaker_fallback,
)
from worker.steps.config import ConfigStep

__all__ = ["BreakersStep"]


class BreakersStep(bootsteps.StartStopStep):
    """Installs this worker's breaker hooks before the pool starts, so forked pool
    processes inherit them: an opening or closing breaker notifies people whichever
    code (``GuardedTask`` or ``SharedCircuitBreaker``) built the process's registry,
    and a process whose breakers fall back to per-process state leaves a marker
    that the heartbeat and ``inspect stats`` report."""

    label = "jenga breakers"
    requires = (ConfigStep,)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.directory = get_settings().heartbeat_dir
        self.hostname = worker.hostname
        # A previous run's markers say nothing now.
        clear_breaker_fallback(self.directory, self.hostname)
        # A breaker alarm's transition goes to the notifiers (Slack, webhook) through this app.
        set_alarm_notifier(functools.partial(notify, app=worker.app))
        set_fallback_listener(self.report)
        worker.jenga_breakers = self

    def report(self, fallback: bool, error: str | None) -> None:
        """Runs in the process whose registry changed (a pool child under prefork)."""
        if fallback:
            mark_breaker_fallback(self.directory, self.hostname, os.getpid(), error)
        else:
            clear_breaker_fallback(self.directory, self.hostname, os.getpid())

    def start(self, worker):
        pass

    def stop(self, worker):
        clear_breaker_fallback(self.directory, self.hostname)

    def summary(self) -> dict:
        return breakers_summary(read_breaker_fallback(self.directory, self.hostname))

    def info(self, worker):
        return {"jenga_breakers": self.summary()}
