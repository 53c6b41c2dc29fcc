"""Level 5: ``jenga.operational.route``, the operational events' router (see
:mod:`worker.operational` for the story)."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC

from psycopg.types.json import Jsonb

from common.broker import OPERATIONAL_ROUTE_TASK
from common.config import get_settings
from common.connections.probes import describe_error
from common.delivery.envelope import webhook_body
from common.delivery.fan_out import FAN_OUT
from common.delivery.models import OPERATIONS_APP_ID, new_id
from common.support.logs import log_event
from worker.app import app
from worker.delivery.resources import DB_ERRORS, transaction
from worker.delivery.tasks import enqueue_all
from worker.operational.queries import DELETE_EVENTS, DROP_MESSAGE, INSERT_MESSAGE, TAKE_EVENTS

__all__ = ["ROUTE_BATCH", "OPERATIONAL_ROUTE_TASK", "route", "route_events"]

log = logging.getLogger("jenga.operational")

# Events routed in one transaction; a run goes on while batches come back full.
ROUTE_BATCH = 100
MAX_BATCHES = 10


def _message(conn, app_id: str, event: dict) -> list[str]:
    """The message of ``event`` for ``app_id`` and its deliveries (due ones' ids, due
    now), or nothing when no operational endpoint of it is subscribed to the event's
    type. The message is dated when the event happened, as its body says."""
    message_id = new_id("msg")
    data_json = json.dumps(event["data"], separators=(",", ":"), ensure_ascii=False)
    body = webhook_body(event["event_type"], event["created_at"].astimezone(UTC), data_json)
    conn.execute(
        INSERT_MESSAGE,
        {
            "id": message_id,
            "app_id": app_id,
            "event_type": event["event_type"],
            "payload": Jsonb(event["data"]),
            "body": body,
            "request_hash": hashlib.sha256(body.encode()).hexdigest(),
            "created_at": event["created_at"],
        },
    )
    deliveries = conn.execute(
        FAN_OUT,
        {
            "message_id": message_id,
            "app_id": app_id,
            "endpoint_id": None,
            "event_type": event["event_type"],
            "channels": [],
            "operational": True,
        },
    ).fetchall()
    if not deliveries:
        conn.execute(DROP_MESSAGE, {"id": message_id})
    return [row["id"] for row in deliveries if row["due"]]


def route_batch(batch: int = ROUTE_BATCH) -> tuple[int, list[str]]:
    """Route the oldest ``batch`` events in one transaction: (events routed, the ids of
    the deliveries made due)."""
    due: list[str] = []
    with transaction() as conn:
        events = conn.execute(TAKE_EVENTS, {"batch": batch}).fetchall()
        if not events:
            return 0, due
        for event in events:
            for app_id in dict.fromkeys((event["app_id"], OPERATIONS_APP_ID)):
                due += _message(conn, app_id, event)
        conn.execute(DELETE_EVENTS, {"ids": [event["id"] for event in events]})
    return len(events), due


def route_events() -> int:
    """Route what the outbox holds (at most ``MAX_BATCHES`` batches) and enqueue the
    deliveries on the operational queue: how many events were routed."""
    settings = get_settings()
    routed = 0
    for _ in range(MAX_BATCHES):
        count, due = route_batch()
        routed += count
        if due:
            enqueue_all(due, settings, roles=["operational"] * len(due))
        if count < ROUTE_BATCH:
            break
    if routed:
        log_event(log, "operational.routed", events=routed)
    return routed


@app.task(name=OPERATIONAL_ROUTE_TASK, ignore_result=True)
def route() -> int:
    try:
        return route_events()
    except DB_ERRORS as error:
        # PostgreSQL is down: its watchdog tells; the events wait in their outbox.
        log_event(log, "operational.route_failed", logging.WARNING, error=describe_error(error))
        return 0
