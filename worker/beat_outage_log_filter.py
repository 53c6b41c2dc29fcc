"""One line, not a page, when beat cannot reach the broker.

While the broker is down, beat fails to send every due entry and Celery logs
each failure with two stack traces ("Message Error: ..."), once a second. An
unreachable broker is an expected failure (the broker watchdog raises the
alarm), so such a record is cut to its one-line message; any other sending
error keeps its traceback.
"""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECTION_ERRORS = (OSError, OperationalError, RedisConnectionError, RedisTimeoutError)


def caused_by_lost_connection(error: BaseException | None) -> bool:
    """Whether ``error`` or anything in its cause/context chain is a connection failure."""
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, CONNECTION_ERRORS):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class BeatOutageFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.exc_info
            and str(record.msg).startswith("Message Error")
            and caused_by_lost_connection(record.exc_info[1])
        ):
            error = record.exc_info[1]
            record.msg, record.args = "Message Error: %s (broker unreachable)", (error,)
            record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    logger = logging.getLogger("celery.beat")
    if not any(isinstance(f, BeatOutageFilter) for f in logger.filters):
        logger.addFilter(BeatOutageFilter())
