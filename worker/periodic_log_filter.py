"""Keeps beat's periodic tasks out of the INFO log.

The dispatcher and the watchdogs run every second or so; Celery logs a
"received" and a "succeeded" line for each run, which buries the events that
matter (they log their own ``delivery.*`` / ``alarm.*`` events when something
happens). Failures of those tasks, and everything at DEBUG, still get through.
"""

from __future__ import annotations

import logging

from worker.schedule import DELIVERY_DISPATCH_TASK, WATCHDOG_TASK

PERIODIC_TASKS = frozenset({DELIVERY_DISPATCH_TASK, WATCHDOG_TASK})


class PeriodicTaskNoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.args, dict):
            return True
        # Celery's trace and strategy loggers pass the task context as a dict.
        return record.args.get("name") not in PERIODIC_TASKS
