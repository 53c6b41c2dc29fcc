"""Beat's once-a-second tasks do not flood the INFO log; failures still show."""

import logging

from worker.periodic_log_filter import PeriodicTaskNoiseFilter


def record(level: int, name: str) -> logging.LogRecord:
    rec = logging.LogRecord("celery.app.trace", level, __file__, 1, "Task %(name)s[%(id)s] succeeded", None, None)
    rec.args = {"name": name, "id": "abc"}  # how Celery passes the task context
    return rec


def test_periodic_task_success_lines_are_dropped():
    noise = PeriodicTaskNoiseFilter()
    assert not noise.filter(record(logging.INFO, "jenga.delivery.dispatch"))
    assert not noise.filter(record(logging.INFO, "jenga.watchdog.check"))


def test_other_tasks_and_failures_are_kept():
    noise = PeriodicTaskNoiseFilter()
    assert noise.filter(record(logging.INFO, "jenga.delivery.deliver"))
    assert noise.filter(record(logging.ERROR, "jenga.delivery.dispatch"))
