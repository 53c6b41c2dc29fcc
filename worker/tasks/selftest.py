"""``jenga.selftest``: the smallest task that proves the whole path works
(broker → worker → Redis). Operators and tests send it and wait for its mark."""

from __future__ import annotations

import socket

from celery import shared_task

from common.broker import SELFTEST_TASK
from common.config import get_settings
from common.redis.client import redis_for
from common.redis.keys import RedisKeys

SELFTEST_TTL_SECONDS = 300


def selftest_key(namespace: str, token: str) -> str:
    """Where the run with ``token`` leaves its mark (:meth:`RedisKeys.selftest`)."""
    return RedisKeys(namespace).selftest(token)


@shared_task(name=SELFTEST_TASK, ignore_result=True)
def selftest(token: str) -> None:
    settings = get_settings()
    client = redis_for(settings)
    try:
        client.set(
            selftest_key(settings.jenga_namespace, token),
            socket.gethostname(),
            ex=SELFTEST_TTL_SECONDS,
        )
    finally:
        client.close()
