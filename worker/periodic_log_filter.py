"""Keeps beat's periodic tasks out of the INFO log.

The dispatcher, the jobs tick, the operational router and the watchdogs run every
second or so; Celery logs "Sending due task" (beat), "received" and "succeeded"
(worker) for each run, which
buries the events that matter (those tasks log their own ``delivery.*`` /
``alarm.*`` events when something happens). Failures of those tasks, and
everything at DEBUG, still get through.

The filter sits on Celery's own loggers rather than on a handler, so it
survives :func:`common.support.logs.configure_logging` replacing the handlers.
"""

from __future__ import annotations

import logging

from common.broker import DISPATCH_TASK, JOBS_TASK, OPERATIONAL_ROUTE_TASK, WATCHDOG_TASK

PERIODIC_TASKS = frozenset({DISPATCH_TASK, JOBS_TASK, OPERATIONAL_ROUTE_TASK, WATCHDOG_TASK})
CELERY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


def task_name(record: logging.LogRecord) -> str | None:
    """The task a Celery INFO line is about: worker lines carry the task context
    as a dict; beat's "Sending due task %s (%s)" has the task name second."""
    args = record.args
    if isinstance(args, dict):
        return args.get("name")
    if isinstance(args, tuple) and len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return None


class PeriodicTaskNoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno != logging.INFO or task_name(record) not in PERIODIC_TASKS


def install() -> None:
    """Attach the filter to Celery's task and beat loggers (once)."""
    for name in CELERY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PeriodicTaskNoiseFilter) for f in logger.filters):
            logger.addFilter(PeriodicTaskNoiseFilter())
