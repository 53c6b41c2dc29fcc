"""Level 2, watching beat: is some beat running the watchdogs? A pure rule.

Beat runs every watchdog; nothing else would tell that beat itself is gone. A
watcher (every worker's heartbeat thread) reads the beat hash
(:mod:`common.health.beat_store`) and judges with :func:`observe`:

* ok: the watchdogs were sent within :func:`stale_after` (Redis's clock on both
  sides): three watchdog intervals, or an interval plus a standby's takeover time
  (``BEAT_LOCK_TTL_SECONDS + BEAT_LOCK_RENEW_SECONDS``) and one more renewal of slack
  (the standby's first tick, the watcher's read) if that is longer, so a takeover
  never raises the alarm;
* stale: they were not, and this watcher has read Redis without a break for at
  least that long too, so a beat that was merely cut off from Redis as well, or
  one starting beside a watcher that has just started, gets its chance to write
  first;
* unknown: Redis could not be read, or the watcher has not watched long enough.

A namespace where no beat ever ran counts as stale too: a fleet deployed without
beat has no watchdogs either.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.health.beat_store import BeatRecord
from common.health.heartbeat import STALE_AFTER_INTERVALS

__all__ = ["BeatVerdict", "BeatWatch", "observe", "stale_after"]


def stale_after(interval: float, lease_ttl: float, renew: float) -> float:
    """Seconds without a watchdog sent after which no beat is running them."""
    return max(STALE_AFTER_INTERVALS * interval, interval + lease_ttl + 2 * renew)


@dataclass(frozen=True)
class BeatWatch:
    """One watcher's memory: since when (its own monotonic clock) it has read Redis
    without a break; None after a failed read."""

    watching_since: float | None = None


@dataclass(frozen=True)
class BeatVerdict:
    kind: str  # "ok" | "stale" | "unknown"
    reason: str
    age: float | None = None  # seconds since the watchdogs were last sent, if ever


def observe(
    watch: BeatWatch,
    record: BeatRecord | None,
    read_ok: bool,
    local_now: float,
    limit: float,
) -> tuple[BeatWatch, BeatVerdict]:
    """The watcher's next memory and its verdict after one read of the beat hash."""
    if not read_ok:
        return BeatWatch(None), BeatVerdict("unknown", "the beat heartbeat is unreadable")
    since = local_now if watch.watching_since is None else watch.watching_since
    age = None
    if record is not None and record.watchdogs_at is not None:
        age = record.now - record.watchdogs_at
        if age <= limit:
            active = record.active or "no beat holds the lease now"
            return BeatWatch(since), BeatVerdict(
                "ok", f"watchdogs sent {age:.1f}s ago (active: {active})", age
            )
    what = "no beat has ever run" if age is None else f"no beat has sent them for {age:.1f}s"
    if local_now - since < limit:
        return BeatWatch(since), BeatVerdict("unknown", f"{what}; watching", age)
    return BeatWatch(since), BeatVerdict(
        "stale", f"watchdogs not run: {what} (limit {limit:.1f}s)", age
    )
