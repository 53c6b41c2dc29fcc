"""Logging for every Jenga process: plain text for people or one JSON object
per line (``LOG_FORMAT=json``), with the same field names in API and worker,
and every registered secret scrubbed from every line.

Events that matter are logged with :func:`log_event`: a stable ``event`` name
plus fields, e.g. ``log_event(log, "dependency.state", dependency="postgres", state="down")``.

In JSON mode nothing else reaches the output: Python warnings are logged; so
are uncaught exceptions (in any thread, or ignored in a finalizer), with their
traceback in the ``exception`` field instead of as bare lines on stderr; and a
record that cannot be formatted is one line saying so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from common.support.masking import SECRETS, SecretMaskingFilter

RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return SECRETS.scrub(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return SECRETS.scrub(line)


class JengaHandler(logging.StreamHandler):
    """The one handler of a Jenga process: stderr, ``LOG_FORMAT``, secrets scrubbed."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        """A record that cannot be formatted (a library's ``log.info("%s %s", one)``):
        in JSON mode one line saying so, instead of logging's "--- Logging error ---"
        and a traceback printed line by line."""
        if not isinstance(self.formatter, JsonFormatter) or not logging.raiseExceptions:
            return super().handleError(record)
        entry = {
            "time": _time(record),
            "level": "error",
            "logger": record.name,
            "event": "logging.error",
            "message": f"log record could not be written: {sys.exc_info()[1]!r}",
            "template": str(record.msg),
        }
        with contextlib.suppress(Exception):  # the stream itself may be what failed
            self.stream.write(SECRETS.scrub(json.dumps(entry, default=str)) + self.terminator)
            self.flush()


def make_handler(log_format: str) -> logging.Handler:
    handler = JengaHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(SecretMaskingFilter())
    return handler


# Loggers that do not propagate to the root, with the level they log at. billiard's
# (Celery's process pool: "Process 'ForkPoolWorker-1' pid:7 exited with 'signal 9
# (SIGKILL)'") has no handler once Celery leaves logging to us: its lines would reach
# stderr as bare text through logging's last-resort handler. ERROR, as Celery sets it.
NON_PROPAGATING_LOGGERS = {"multiprocessing": logging.ERROR}


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Route the root logger (and the few that do not propagate) through one
    scrubbing handler in the chosen format; warnings are logged too."""
    handler = make_handler(log_format)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, lowest in NON_PROPAGATING_LOGGERS.items():
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, JengaHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(max(lowest, root.level))
    logging.captureWarnings(True)
    _route_uncaught_exceptions(log_format == "json")


def _log_uncaught(exc_type, exc, traceback) -> None:
    logging.getLogger("jenga").critical(
        "uncaught exception",
        exc_info=(exc_type, exc, traceback),
        extra={"event": "process.uncaught_exception"},
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread may exit that way
        return
    thread = args.thread.name if args.thread is not None else None
    logging.getLogger("jenga").critical(
        "uncaught exception in thread %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"event": "thread.uncaught_exception", "thread_name": thread},
    )


def _log_unraisable(unraisable: Any) -> None:
    # "Exception ignored in: ...": an error in __del__ or a finalizer, often at exit.
    message = unraisable.err_msg or "Exception ignored in"
    logging.getLogger("jenga").warning(
        "%s: %r",
        message,
        unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
        extra={"event": "process.unraisable_exception"},
    )


HOOKS = (  # (module, attribute, Jenga's hook, Python's own)
    (sys, "excepthook", _log_uncaught, sys.__excepthook__),
    (threading, "excepthook", _log_uncaught_in_thread, threading.__excepthook__),
    (sys, "unraisablehook", _log_unraisable, sys.__unraisablehook__),
)


def _route_uncaught_exceptions(json_mode: bool) -> None:
    """In JSON mode an uncaught exception is one log record, not a traceback
    printed line by line; in text mode Python's own hooks print it, as always."""
    for module, attribute, ours, default in HOOKS:
        if json_mode:
            setattr(module, attribute, ours)
        elif getattr(module, attribute) is ours:
            setattr(module, attribute, default)


def print_config_error(error: Any, environ: Mapping[str, str]) -> None:
    """The one message of a bad configuration (a :class:`common.config.ConfigError`),
    on stderr, before logging is configured (its format is a setting too).

    When the environment asks for ``LOG_FORMAT=json`` it is one JSON object, event
    ``config.invalid`` with the ``problems`` as a list: the line a log shipper keeps
    whole and an alert can match. Otherwise, including a ``LOG_FORMAT`` that is
    itself the invalid setting or one given only in ``JENGA_ENV_FILE`` or the secrets
    folder (not read here: they are part of what failed), it is the text for people."""
    if environ.get("LOG_FORMAT") == "json":
        record = logging.makeLogRecord(
            {
                "name": "jenga.config",
                "levelno": logging.CRITICAL,
                "levelname": "CRITICAL",
                "msg": error.message(),
                "event": "config.invalid",
                "problems": list(error.problems),
            }
        )
        text = JsonFormatter().format(record)
    else:
        text = error.message()
    print(text, file=sys.stderr, flush=True)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: ``event`` names it, ``fields`` are its data."""
    logger.log(level, event, extra={"event": event, **fields})
