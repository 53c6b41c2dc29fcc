"""Level 4: one call's slot of a fleet-wide concurrency limit.

A :class:`Lease` is what ``SharedLimit.try_acquire`` hands out; releasing it
records the call's outcome with the limit that granted it, once.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Lease", "LeaseOwner"]


class LeaseOwner(Protocol):
    """The limit a lease goes back to (``SharedLimit``)."""

    def release(self, lease: Lease, dropped: bool, latency: float) -> None: ...


class Lease:
    """One call's slot. :meth:`release` records the call's outcome; a second
    release is ignored."""

    __slots__ = ("_owner", "slot", "fallback", "_released")

    def __init__(self, owner: LeaseOwner, slot: str | None, fallback: bool = False):
        self._owner = owner
        self.slot = slot  # None: a local fallback slot (Redis unreachable)
        self.fallback = fallback
        self._released = False

    def release(self, dropped: bool = False, latency: float = 0.0) -> None:
        """Give the slot back; ``dropped`` marks a failure (error, timeout,
        429/503), ``latency`` is the call's duration in seconds."""
        self._owner.release(self, dropped, latency)

    @property
    def released(self) -> bool:
        return self._released

    def mark_released(self) -> bool:
        """True the first time (the owner then counts the outcome), False after.
        The owner calls it under its lock."""
        if self._released:
            return False
        self._released = True
        return True
