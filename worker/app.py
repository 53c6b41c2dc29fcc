"""The Celery application.

Importing this module connects to nothing and reads no setting. The first read
of ``app.conf`` (by any ``celery -A worker ...`` command: worker, beat, flower,
inspect) loads Jenga's settings through :func:`common.config.get_settings`,
which stops the process with one clear message when they are bad, before any
connection is attempted. The worker additionally declares the order in its
blueprint with :class:`worker.steps.ConfigStep`.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

from celery import Celery
from celery.signals import celeryd_init, setup_logging

from common.broker import whole_second_delay
from common.config import get_settings
from common.support.logs import configure_logging
from worker import console_events
from worker.celeryconfig import celery_config

TASK_MODULES = [
    "worker.tasks.selftest",
    "worker.tasks.metrics_probe",
    "worker.tasks.watchdogs",
    "worker.tasks.notifications",
    "worker.tasks.retention",
    "worker.delivery.tasks",
    "worker.jobs.tasks",
    "worker.operational.tasks",
]


class JengaCelery(Celery):
    """Celery, with beat's program class replaced (the only hook before its banner),
    and delays rounded up to whole seconds on quorum queues."""

    def send_task(self, name, args=None, kwargs=None, countdown=None, eta=None, **options):
        """Every publish of the worker and beat (``apply_async``, ``retry``, a guarded
        task's deferral). On quorum queues Celery hands a delay to RabbitMQ's native
        delayed delivery, which truncates it to whole seconds: a 0.5 s deferral would
        come straight back, and a send slot's ETA would be early. Rounded up here."""
        if self.conf.task_default_queue_type == "quorum" and (
            countdown is not None or isinstance(eta, datetime)
        ):
            countdown, eta = whole_second_delay(countdown, eta, self.now()), None
        return super().send_task(name, args, kwargs, countdown=countdown, eta=eta, **options)

    @cached_property
    def Beat(self):  # noqa: N802 (Celery's name for the program class)
        """``celery beat`` with no banner printed in JSON mode (:mod:`worker.console_events`)."""
        return self.subclass_with_self(console_events.Beat)


app = JengaCelery("jenga", include=TASK_MODULES, set_as_current=True)
app.add_defaults(lambda: celery_config(get_settings()))


def _install_bootsteps() -> None:
    from worker.steps import (
        BreakersStep,
        ConfigStep,
        ConnectionsStep,
        ConsumerStateStep,
        DrainStep,
        HeartbeatStep,
    )

    app.steps["worker"].add(ConfigStep)
    app.steps["worker"].update({ConnectionsStep, BreakersStep, HeartbeatStep, DrainStep})
    app.steps["consumer"].add(ConsumerStateStep)


_install_bootsteps()


@celeryd_init.connect
@setup_logging.connect
def _jenga_logging(**_kwargs) -> None:
    """Worker and beat log through Jenga's handler (``LOG_FORMAT``, secrets
    scrubbed), task loggers included: a receiver here makes Celery leave the
    logging setup to us instead of installing its own format. The worker's
    ``celeryd_init`` comes first, just before Celery's privilege check, so its
    ``SecurityWarning`` (running as root) is logged too."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    from worker import beat_outage_log_filter, periodic_log_filter

    beat_outage_log_filter.install()
    if settings.log_level != "DEBUG":
        periodic_log_filter.install()
