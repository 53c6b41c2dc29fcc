"""The Celery side of Jenga: ``celery -A worker worker|beat|flower``."""

from worker.app import app

__all__ = ["app"]
