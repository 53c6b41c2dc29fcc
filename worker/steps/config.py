"""Level 0 in the worker: config before connect.

``ConfigStep`` is the first step of the worker blueprint: settings are loaded,
validated and applied to the app before Celery's consumer step opens the
broker connection. A bad configuration stops the worker here, with the one
message of :class:`~common.config.ConfigError`.
"""

from __future__ import annotations

import logging

from celery import bootsteps

from common.config import describe_settings, get_settings
from common.support.logs import configure_logging, log_event
from worker.celeryconfig import celery_config

__all__ = ["ConfigStep"]

log = logging.getLogger("jenga.worker")


class ConfigStep(bootsteps.StartStopStep):
    """Loads, checks and applies the settings; owns nothing on the worker."""

    label = "jenga config"

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.settings = get_settings()  # exits with the message on bad config
        worker.app.conf.update(celery_config(self.settings))
        configure_logging(self.settings.log_format, self.settings.log_level)

    def start(self, worker):
        log_event(log, "config.loaded", namespace=self.settings.jenga_namespace)

    def info(self, worker):
        return {
            "jenga_config": {
                "state": "loaded",
                "namespace": self.settings.jenga_namespace,
                "broker": describe_settings(self.settings)["BROKER_URL"],
            }
        }
