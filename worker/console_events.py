"""Celery's console output as log events when ``LOG_FORMAT=json``.

Celery prints a few things instead of logging them: the worker's and beat's
start-up banners, and the notices of the worker's signal handlers ("worker:
Warm shutdown (MainProcess)", "worker: Hitting Ctrl+C again ..."), which go
straight to file descriptor 1. In JSON mode they would be lines of bare text in
a stream that a log shipper reads as one JSON object per line. So, in JSON mode:

* the banners are off, by Celery's own ``quiet`` switch: set from the
  ``celeryd_init`` signal for the worker; beat has no hook before it prints, so
  :class:`Beat` (the app's ``Beat`` program) sets it. Their facts are logged as
  one ``worker.starting`` / ``beat.starting`` event instead;
* the signal handlers' notices are logged by :func:`log_notice`, which replaces
  ``celery.apps.worker.safe_say``. That is the one override: those handlers call
  that function and nothing else, and no signal comes before it.

In text mode Celery prints all of it as it always has.
"""

from __future__ import annotations

import logging

from celery import VERSION_BANNER
from celery.apps.beat import Beat as CeleryBeat
from celery.signals import beat_init, celeryd_after_setup, celeryd_init
from celery.utils.imports import qualname

from common.config import get_settings
from common.support.logs import log_event

log = logging.getLogger("jenga.worker")
beat_log = logging.getLogger("jenga.beat")
notices = logging.getLogger("celery.apps.worker")  # the module that prints them


def json_mode() -> bool:
    return get_settings().log_format == "json"


def log_notice(msg: str, f=None) -> None:
    """``safe_say`` as a log line. Called from signal handlers, which Python runs
    between bytecodes of the main thread: logging's locks are re-entrant there."""
    notices.info(msg.strip())


@celeryd_init.connect
def _quiet_worker(instance, **_kwargs) -> None:
    if json_mode():
        import celery.apps.worker

        instance.quiet = True
        celery.apps.worker.safe_say = log_notice


@celeryd_after_setup.connect
def _log_worker_banner(instance, **_kwargs) -> None:
    if not json_mode():
        return
    app = instance.app
    pool = instance.pool_cls if isinstance(instance.pool_cls, str) else instance.pool_cls.__module__
    log_event(
        log,
        "worker.starting",
        hostname=instance.hostname,
        celery=VERSION_BANNER,
        broker=app.connection().as_uri(),
        pool=pool.rsplit(".", 1)[-1],
        concurrency=instance.concurrency,
        task_events=bool(instance.task_events),
        queues=sorted(app.amqp.queues.consume_from or app.amqp.queues),
        tasks=sorted(name for name in app.tasks if not name.startswith("celery.")),
    )


class Beat(CeleryBeat):
    """``celery beat`` that prints no banner in JSON mode (see the module doc)."""

    def __init__(self, *args, quiet: bool = False, **kwargs) -> None:
        super().__init__(*args, quiet=quiet or json_mode(), **kwargs)


@beat_init.connect
def _log_beat_banner(sender, **_kwargs) -> None:
    if not json_mode():
        return
    scheduler = sender.scheduler
    log_event(
        beat_log,
        "beat.starting",
        celery=VERSION_BANNER,
        broker=sender.app.connection().as_uri(),
        scheduler=qualname(scheduler),
        schedule=sender.schedule_filename,
        max_interval=scheduler.max_interval,
    )
