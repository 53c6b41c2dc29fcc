"""Level 5: the whole delivery state in a few numbers, for the status page: endpoints
by state, and how far behind the due deliveries are (the statements and their answer).

* :data:`ENDPOINT_STATES`: every endpoint in one state, the first that holds of
  ``disabled``, ``paused`` (``paused_at`` set), ``failing`` (``failing_since`` set:
  every attempt since the last success failed) and ``healthy``. One scan of
  ``webhook_endpoints``, the small table (an endpoint per receiver, not per message).
* :data:`BACKLOG`: of the pending deliveries due now (``next_attempt_at <= now()``:
  queued, in the broker, or in flight), how many, counted up to :data:`DUE_COUNT_CAP`,
  and how long the one due first has waited. Both read the partial index
  ``ix_webhook_deliveries_due`` alone (pending rows only, in ``next_attempt_at``
  order): the oldest is its first entry, and the count stops at the cap, so the cost is
  bounded whatever the size of the table (10⁷ deliveries) or of an outage's backlog.
  Paused deliveries wait with ``next_attempt_at`` NULL and retries with a later one:
  neither is due, so neither is backlog.

Times are PostgreSQL's (``now()``), the clock that set ``next_attempt_at``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKLOG", "DUE_COUNT_CAP", "ENDPOINT_STATES", "STATES", "DeliveryOverview"]

STATES = ("healthy", "failing", "paused", "disabled")
DUE_COUNT_CAP = 10_000

ENDPOINT_STATES = """
    SELECT count(*) FILTER (WHERE NOT disabled AND paused_at IS NULL
                              AND failing_since IS NULL) AS healthy,
           count(*) FILTER (WHERE NOT disabled AND paused_at IS NULL
                              AND failing_since IS NOT NULL) AS failing,
           count(*) FILTER (WHERE NOT disabled AND paused_at IS NOT NULL) AS paused,
           count(*) FILTER (WHERE disabled) AS disabled
    FROM webhook_endpoints
    """

BACKLOG = """
    SELECT (SELECT count(*) FROM (
                SELECT 1 FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= now()
                LIMIT %(cap)s) due) AS due,
           EXTRACT(EPOCH FROM now() - (
                SELECT min(next_attempt_at) FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= now())) AS oldest_due_seconds
    """


@dataclass(frozen=True)
class DeliveryOverview:
    """Endpoints by state (:data:`STATES`, each counted once) and the due backlog:
    ``due`` pending deliveries due now (``due_capped``: at least that many), the first
    of them due ``oldest_due_seconds`` ago (None: nothing is due)."""

    endpoints: dict[str, int]
    due: int
    oldest_due_seconds: float | None

    @property
    def due_capped(self) -> bool:
        return self.due >= DUE_COUNT_CAP
