"""Beat's once-a-second tasks do not flood the INFO log; failures still show.
The records are made by Celery's own logging calls."""

import logging

import pytest
from celery.app import trace

from worker import periodic_log_filter


@pytest.fixture
def captured():
    periodic_log_filter.install()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in periodic_log_filter.CELERY_LOGGERS]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield records
    for logger, (level, propagate) in zip(loggers, saved, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def test_periodic_task_lines_are_dropped_other_tasks_and_failures_kept(captured):
    for name in ("jenga.delivery.dispatch", "jenga.watchdog.check", "jenga.delivery.deliver"):
        trace.info(
            trace.LOG_SUCCESS, {"id": "abc", "name": name, "return_value": "0", "runtime": 0.01}
        )
    trace.logger.error(
        trace.LOG_FAILURE,
        {
            "id": "abc",
            "name": "jenga.delivery.dispatch",
            "exc": "boom",
            "description": "raised unexpected",
        },
    )
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "delivery-dispatch", "jenga.delivery.dispatch"
    )
    logging.getLogger("celery.beat").info(
        "Scheduler: Sending due task %s (%s)", "watchdog-x", "jenga.selftest"
    )
    kept = [r.getMessage() for r in captured]
    assert not any("dispatch" in m and "succeeded" in m for m in kept)
    assert not any("watchdog.check" in m for m in kept)
    assert not any("Sending due task delivery-dispatch" in m for m in kept)
    assert any("jenga.delivery.deliver" in m and "succeeded" in m for m in kept)
    assert any("jenga.delivery.dispatch" in m and "raised" in m for m in kept)
    assert any("jenga.selftest" in m for m in kept)
