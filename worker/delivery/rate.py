"""Level 5, promised rates in the worker: before a delivery to an endpoint with a
``rate_limit`` is sent, it takes the endpoint's next send slot, shared by the whole
fleet in Redis (:mod:`common.delivery.rate_slots`).

* A slot now, or within :data:`SLEEP_MAX_SECONDS`: sent (after that short wait).
* A slot further ahead: the delivery is released until then, holding the slot
  (``RESERVE``); the dispatcher enqueues it shortly before, with the slot as its ETA
  (:func:`slot_lookahead_seconds`), and it is sent then without taking another. Claimed
  more than 0.5 s after its slot (workers or PostgreSQL overloaded), it forfeits the slot
  and takes a new one: a late backlog is spaced again, not sent at once.
* No slot within ``DELIVERY_RATE_HORIZON_SECONDS``: this delivery and the endpoint's
  unreserved backlog wait until half a horizon of slots is free again (``RATE_PARK``).
* Redis unreachable: the rate cannot be kept, so nothing is sent (fail closed); the
  delivery comes back after :data:`UNAVAILABLE_RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import time

import redis

from common.access.ratelimit import MICRO
from common.config import Settings, get_settings
from common.connections.probes import describe_error
from common.delivery.rate_slot_store import RateSlotStore
from common.delivery.rate_slots import options_for
from common.redis.client import redis_for
from common.support.logs import log_event
from common.support.per_process import PerProcess
from worker.delivery.queries import RATE_PARK, RELEASE, RESERVE, Claim
from worker.delivery.resources import execute

__all__ = [
    "SLEEP_MAX_SECONDS",
    "UNAVAILABLE_RETRY_SECONDS",
    "slot_lookahead_seconds",
    "wait_for_slot",
]

log = logging.getLogger("jenga.delivery")

# A slot this close is waited for in the task: going round the dispatcher (1 s) for it
# would cost more than the wait, and the pool slot is held no longer than a fast POST.
SLEEP_MAX_SECONDS = 0.25
# Redis away: how long a delivery to a rate-limited endpoint waits before it asks again.
UNAVAILABLE_RETRY_SECONDS = 5.0


def slot_lookahead_seconds(settings: Settings) -> float:
    """How far ahead the dispatcher enqueues deliveries holding a send slot: past its next
    run, so that every slot is enqueued (with the slot as its ETA) before it comes."""
    return settings.delivery_dispatch_interval_seconds * 1.5


def _open_store() -> RateSlotStore:
    settings = get_settings()
    return RateSlotStore(redis_for(settings), settings.jenga_namespace)


_store = PerProcess(_open_store)
store = _store.get


def wait_for_slot(claimed: Claim, settings: Settings) -> str | None:
    """None when ``claimed`` may be sent now (no promised rate, a slot it holds, or one
    taken now); otherwise it was released to come back later, and ``"deferred"``."""
    if claimed.rate_limit is None or claimed.holds_rate_slot:
        return None
    horizon_us = int(settings.delivery_rate_horizon_seconds * MICRO)
    try:
        slot = store().reserve(claimed.endpoint_id, options_for(claimed.rate_limit), horizon_us)
    except redis.RedisError as error:
        params = {"id": claimed.delivery_id, "token": claimed.token}
        execute(RELEASE, {**params, "retry_in": UNAVAILABLE_RETRY_SECONDS})
        log_event(
            log,
            "delivery.rate_unavailable",
            logging.WARNING,
            delivery_id=claimed.delivery_id,
            endpoint_id=claimed.endpoint_id,
            error=describe_error(error),
            retry_in=UNAVAILABLE_RETRY_SECONDS,
        )
        return "deferred"
    wait = slot.wait_us / MICRO
    params = {"id": claimed.delivery_id, "token": claimed.token}
    if slot.granted and wait <= SLEEP_MAX_SECONDS:
        time.sleep(wait)
        return None
    if slot.granted:
        execute(RESERVE, {**params, "wait": wait})
        log_event(
            log,
            "delivery.rate_reserved",
            logging.DEBUG,
            delivery_id=claimed.delivery_id,
            endpoint_id=claimed.endpoint_id,
            wait=round(wait, 3),
        )
        return "deferred"
    until = wait + settings.delivery_rate_horizon_seconds / 2
    rows = execute(RATE_PARK, {**params, "wait": until})
    log_event(
        log,
        "delivery.rate_parked",
        delivery_id=claimed.delivery_id,
        endpoint_id=claimed.endpoint_id,
        retry_in=round(until, 1),
        waiting=rows[0]["waiting"] if rows else 0,
        rate_limit=claimed.rate_limit,
    )
    return "deferred"
