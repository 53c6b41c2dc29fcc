"""Beat's failures to reach the broker are one line each; other send errors keep their traceback."""

import logging

import pytest
from celery.beat import SchedulingError
from kombu.exceptions import OperationalError

from worker.beat_outage_log_filter import BeatOutageFilter


def beat_error_record(cause: BaseException) -> logging.LogRecord:
    """The record Celery's ``Scheduler.apply_entry`` logs when sending fails."""
    try:
        try:
            raise cause
        except Exception as exc:
            raise SchedulingError(
                f"Couldn't apply scheduled task delivery-dispatch: {exc}"
            ) from exc
    except SchedulingError as error:
        logger = logging.getLogger("celery.beat")
        return logger.makeRecord(
            "celery.beat",
            logging.ERROR,
            __file__,
            1,
            "Message Error: %s\n%s",
            (error, ["  File ...stack...\n"]),
            (type(error), error, error.__traceback__),
        )


@pytest.mark.parametrize(
    "cause",
    [
        OperationalError("Error 111 connecting to 127.0.0.1:6379"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_broker_unreachable_is_one_line(cause):
    record = beat_error_record(cause)
    assert BeatOutageFilter().filter(record)
    line = logging.Formatter().format(record)
    assert "\n" not in line and "Traceback" not in line
    assert "delivery-dispatch" in line and "broker unreachable" in line


def test_other_send_errors_keep_their_traceback():
    record = beat_error_record(ValueError("cannot serialize"))
    assert BeatOutageFilter().filter(record)
    assert "Traceback" in logging.Formatter().format(record)
