"""Celery settings derived from Jenga's :class:`~common.config.Settings`.

A pure mapping: it reads settings and returns a dict, so it is tested without
a broker."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from common import broker
from common.config import Settings
from common.redis.keys import RedisKeys
from worker.schedule import beat_schedule


def queue_names(settings: Settings) -> dict[str, str]:
    """The queues of this configuration by role (:func:`common.broker.queue_names`)."""
    return broker.queue_names(settings.jenga_namespace)


REDIS_BROKER_SOCKET_TIMEOUT_SECONDS = 10.0


def celery_config(settings: Settings) -> dict[str, Any]:
    # A redis+sentinel:// BROKER_URL becomes a sentinel transport (master_name...).
    kombu = broker.kombu_broker(settings.effective_broker_url, settings.check_timeout_seconds)
    transport_options: dict[str, Any] = {
        # Long enough for the slowest delivery; deferred tasks never wait in the
        # broker with an ETA beyond it (breaker deferrals are capped well below).
        "visibility_timeout": 3600,
        **kombu.options,
    }
    if broker.is_redis_broker(settings.effective_broker_url):
        transport_options["global_keyprefix"] = RedisKeys(settings.jenga_namespace).broker_prefix()
        # Without socket timeouts a Redis that accepts connections but never
        # answers (frozen, half-open TCP) blocks a publish, or the consumer,
        # forever. Reads must outlast the consumer's 1 s BRPOP.
        transport_options["socket_connect_timeout"] = settings.check_timeout_seconds
        transport_options["socket_timeout"] = REDIS_BROKER_SOCKET_TIMEOUT_SECONDS
    queues = queue_names(settings)
    return {
        # BROKER_QUEUE_TYPE: the publishers declare queues the same way.
        **broker.queue_declarations(settings),
        "broker_url": kombu.url,
        "broker_transport": kombu.transport,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Retries the broker with backoff and full jitter (RECONNECT_*_SECONDS).
        "worker_consumer": "worker.steps.consumer:JengaConsumer",
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": queues["default"],
        # Remote control and events per namespace. On Redis the key prefix
        # separates namespaces; on RabbitMQ these exchanges are vhost-wide, and
        # with Celery's defaults two fleets (or two tests) on one vhost would
        # answer each other's inspect calls and collide on `celery@host.celery.pidbox`.
        "control_exchange": settings.jenga_namespace,
        "event_exchange": f"{settings.jenga_namespace}.celeryev",
        "task_routes": {
            # Watchdogs and notifications need neither PostgreSQL nor a free delivery slot.
            broker.WATCHDOG_TASK: {"queue": queues["alarms"]},
            broker.NOTIFY_TASK: {"queue": queues["alarms"]},
            # Deliveries need PostgreSQL; the worker stops consuming them while it is down.
            broker.DELIVER_TASK: {"queue": queues["deliveries"]},
            broker.FAN_OUT_TASK: {"queue": queues["deliveries"]},
            broker.JOBS_TASK: {"queue": queues["deliveries"]},
            broker.OPERATIONAL_ROUTE_TASK: {"queue": queues["operational"]},
        },
        "beat_schedule": beat_schedule(settings),
        # Schedules only while it holds the beat lease (any number of beats may run).
        "beat_scheduler": "worker.beat_scheduler:FencedScheduler",
        # Beat's last-run bookkeeping is scratch state: keep it out of the
        # working tree (and out of a read-only image), one file per namespace.
        "beat_schedule_filename": os.path.join(
            tempfile.gettempdir(), f"jenga-{settings.jenga_namespace}-celerybeat-schedule"
        ),
        # A backstop: every blocking call a task makes has its own deadline.
        "task_soft_time_limit": settings.task_time_limit_seconds * 0.9,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "timezone": "UTC",
        "enable_utc": True,
        "accept_content": ["json"],
        "task_serializer": "json",
        "event_serializer": "json",
    }
