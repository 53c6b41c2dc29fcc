"""Level 5, the pace of a recover or bulk-retry job: pure, no clock, no database.

A job publishes no task per delivery. It makes failed deliveries pending again with
``next_attempt_at`` spread ``1 / rate`` apart, and the dispatcher enqueues each when
it is due, among live traffic, in ``next_attempt_at`` order. At each beat tick a job
fills that schedule only up to ``ahead`` past now, from where it stopped (its
*frontier*), so:

* in no stretch of time do more than ``rate`` a second (plus one) become due;
* a tick that comes late (workers busy, the deliveries queue backed up) makes no
  burst: the schedule restarts at now, never in the past;
* a job that stops, or whose endpoint is disabled or paused midway, has re-queued
  little more than ``ahead`` of work in advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Slots", "due_slots"]


@dataclass(frozen=True)
class Slots:
    """What a job may re-queue now: ``count`` deliveries due from ``first`` on, one
    every ``spacing``."""

    first: datetime
    count: int
    spacing: timedelta

    def times(self, n: int) -> list[datetime]:
        """When each of the first ``n`` (at most ``count``) deliveries taken becomes due."""
        return [self.first + k * self.spacing for k in range(min(n, self.count))]

    def frontier_after(self, n: int) -> datetime:
        """The job's frontier once it has taken ``n`` of these: the next one's due time."""
        return self.first + min(n, self.count) * self.spacing


def due_slots(frontier: datetime | None, now: datetime, rate: float, ahead: timedelta) -> Slots:
    """The slots of one tick at ``now`` for a job whose next delivery would be due at
    ``frontier`` (None: it has re-queued nothing yet), at ``rate`` a second, filling the
    schedule up to ``now + ahead``. At least one when the schedule has run out (however
    low the rate), none when it is already filled that far. Due times are whole
    microseconds apart (PostgreSQL's resolution), rounded up: the rate is never exceeded,
    and a million a second is the most."""
    spacing = timedelta(microseconds=math.ceil(1_000_000 / rate))
    first = now if frontier is None or frontier < now else frontier
    count = (now + ahead - first) // spacing
    if first == now:
        count = max(count, 1)
    return Slots(first, max(count, 0), spacing)
