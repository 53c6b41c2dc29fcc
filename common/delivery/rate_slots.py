"""Promised rates: an endpoint's ``rate_limit`` (deliveries a second) as send slots
(pure, no I/O).

Each endpoint has a token bucket (:mod:`common.access.ratelimit`'s, refilling at
``rate_limit`` a second, ``burst`` saved up at most) that may run into debt up to
a ``horizon``: a delivery that finds no whole token does not wait in a worker or go
round the broker again and again, it *reserves* the token that will come, the next
free slot, and comes back at that time (GCRA, the generic cell rate algorithm). So
an endpoint's backlog is sent in order, one slot after another, without a task per
delivery per second. Over any stretch of ``t`` seconds of slot times an endpoint
gets at most ``burst + rate_limit × t`` slots, however many workers reserve them.

A delivery whose slot would be more than ``horizon`` ahead is refused and takes
nothing (:attr:`Slot.wait_us` says when one would fit); the worker then moves the
endpoint's unreserved backlog past that time in one statement.

The arithmetic is :mod:`common.access.ratelimit`'s (integers: microseconds and
millionths of a token), and ``rate_slots.lua`` is its twin that applies it
atomically in Redis for the whole fleet; a test runs random sequences through
both and demands they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.access.ratelimit import MICRO, Bucket, RateOptions, refill

__all__ = ["MAX_RATE_LIMIT", "Slot", "burst_for", "options_for", "reserve", "slot_ttl_ms"]

# Deliveries a second an endpoint may be promised (Svix takes any positive integer;
# beyond this a limit says nothing a worker fleet of this kind could exceed).
MAX_RATE_LIMIT = 10_000


def burst_for(rate_limit: int) -> int:
    """Slots an idle endpoint may use at once: a tenth of a second's worth, at least 1,
    so that a receiver promised 50 a second never sees more than 5 at the same instant."""
    return max(1, math.ceil(rate_limit / 10))


def options_for(rate_limit: int) -> RateOptions:
    """The bucket of an endpoint promised ``rate_limit`` deliveries a second."""
    return RateOptions(per_second=rate_limit, burst=burst_for(rate_limit))


def slot_ttl_ms(options: RateOptions, horizon_us: int, margin_ms: int) -> int:
    """Milliseconds a bucket's key outlives its last reservation: the time a bucket in
    its deepest debt takes to fill up, plus ``margin_ms`` (a missing bucket is a full one)."""
    deepest = horizon_us * options.per_second + options.capacity  # millionths to refill
    return -(-deepest // (options.per_second * 1000)) + margin_ms


@dataclass(frozen=True)
class Slot:
    """One delivery's reservation. ``granted``: a token is taken and the delivery may be
    sent ``wait_us`` microseconds from now (0: at once). Refused: nothing is taken, and
    ``wait_us`` is how long until a reservation would fit within the horizon."""

    granted: bool
    wait_us: int
    bucket: Bucket


def reserve(bucket: Bucket | None, now: int, options: RateOptions, horizon_us: int) -> Slot:
    """Reserve the next slot of ``bucket`` (None: never used, or its key expired: full)
    at ``now`` (microseconds), at most ``horizon_us`` ahead."""
    current = refill(bucket, now, options)
    after = current.tokens - MICRO
    wait_us = math.ceil(max(0, -after) / options.per_second)
    if wait_us > horizon_us:
        return Slot(False, wait_us - horizon_us, current)
    return Slot(True, wait_us, Bucket(after, current.at))
