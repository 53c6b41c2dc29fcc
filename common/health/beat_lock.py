"""Level 2, beat leadership: which beat may schedule, as a pure rule.

Any number of beats run; the one holding the lease schedules. A lease has a
holder, an expiry and a fencing token that grows by one at every grant, so a
beat that lost its lease (paused, cut off from Redis) and comes back can tell,
and so can anything it writes to (its heartbeat writes are fenced by the token).

* :func:`claim`: a free or expired lease is granted to the caller with the next
  token; the holder's own claim with its token renews it; anyone else is refused.
  A holder whose lease expired gets a new token, even if nobody took it meanwhile:
  what it did after the expiry was outside any lease.
* :func:`release`: the holder gives the lease up (a clean stop), so a standby
  takes over at its next claim instead of waiting for the expiry.
* :func:`may_write`: whether ``(holder, token)`` holds the lease now.

Its twin ``beat_lock.lua`` (same folder, same stem) applies the rule atomically in
Redis on Redis's clock; ``tests/integration/test_beat_lock_model.py`` runs random
sequences through both and demands they agree.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["Lease", "claim", "may_write", "release"]


@dataclass(frozen=True)
class Lease:
    """``token`` is the last one granted (0: never); ``expires_at`` Redis time."""

    holder: str = ""
    token: int = 0
    expires_at: float = 0.0

    def held(self, now: float) -> bool:
        return bool(self.holder) and now < self.expires_at


def may_write(lease: Lease, holder: str, token: int, now: float) -> bool:
    return lease.held(now) and lease.holder == holder and lease.token == token


def claim(lease: Lease, holder: str, token: int, now: float, ttl: float) -> tuple[Lease, bool]:
    """The lease after ``holder`` (holding ``token``, 0 for none) claims it for ``ttl``
    seconds, and whether it was granted."""
    if may_write(lease, holder, token, now):
        return replace(lease, expires_at=now + ttl), True
    if lease.held(now):
        return lease, False
    return Lease(holder, lease.token + 1, now + ttl), True


def release(lease: Lease, holder: str, token: int, now: float) -> tuple[Lease, bool]:
    """The lease after its holder gives it up; unchanged for anyone else."""
    if not may_write(lease, holder, token, now):
        return lease, False
    return Lease("", lease.token, now), True
