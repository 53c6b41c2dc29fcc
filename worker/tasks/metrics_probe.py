"""``jenga.metrics.probe``: an operator's smoke test of fleet-wide metrics.

Each run records ``n`` delivery events for ``service`` with outcome ``probe``
through the same :func:`common.health.fleet_metrics.record_delivery` that real
deliveries use, and adds its process id to ``{ns}:metrics_probe:{token}``.
Send a batch to a prefork worker and ``/metrics`` must show
``jenga_deliveries_total{service=...,outcome="probe"}`` equal to the total sent,
however many processes ran them (the key shows how many did)::

    celery -A worker call jenga.metrics.probe --args='["smoke-1", 100, "probe:smoke-1"]'
"""

from __future__ import annotations

import os

from celery import shared_task

from common.broker import METRICS_PROBE_TASK
from common.config import get_settings
from common.health.fleet_metrics import record_delivery
from common.redis.client import redis_for
from common.redis.keys import RedisKeys

PROBE_TTL_SECONDS = 300


@shared_task(name=METRICS_PROBE_TASK, ignore_result=True)
def metrics_probe(token: str, n: int, service: str) -> None:
    for _ in range(int(n)):
        record_delivery("probe", 0.001, service)
    settings = get_settings()
    client = redis_for(settings)
    try:
        key = RedisKeys(settings.jenga_namespace).metrics_probe(token)
        client.sadd(key, f"{os.uname().nodename}:{os.getpid()}")
        client.expire(key, PROBE_TTL_SECONDS)
    finally:
        client.close()
