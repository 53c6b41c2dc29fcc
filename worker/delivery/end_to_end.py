"""Level 5: how long a delivered message took to one endpoint, from its creation to
the end of the attempt that delivered it (``jenga_delivery_end_to_end_seconds``).

Two clocks in one subtraction would be off by their skew: the message's
``created_at`` is PostgreSQL's (the API takes it from ``now()`` in the message's
transaction), the attempt's end is the worker's. So the span is added up from two
parts, each read on one clock: the message's age when it was claimed, on PostgreSQL's
(``claimed_at - created_at``, both from the database: ``CLAIM_ONE`` returns them),
then the time from the claim to the end of the attempt, on the worker's monotonic
clock. What is left of error is the claim statement's own round trip (the monotonic
time is read just before it is sent): milliseconds, against buckets of 100 ms and up.
A worker whose wall clock is minutes off measures the same.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["end_to_end_seconds"]


def end_to_end_seconds(
    created_at: datetime | None,
    claimed_at: datetime | None,
    claim_sent: float,
    attempt_ended: float,
) -> float | None:
    """Seconds from the message's creation to the attempt's end: its age at the claim
    (database times) plus ``attempt_ended - claim_sent`` (``time.monotonic()`` values);
    None when the claim did not say when the message was created."""
    if created_at is None or claimed_at is None:
        return None
    age = (claimed_at - created_at).total_seconds()
    return max(0.0, age) + max(0.0, attempt_ended - claim_sent)
