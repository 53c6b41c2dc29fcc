"""Celery tasks: the watchdogs (level 3), alarm notifications, the self-test
and the metrics probe."""
