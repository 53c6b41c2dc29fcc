"""Level 4: the circuit breaker's decisions, as pure functions of (policy, state, now).

No clock, no Redis, no threads: the same rules run in ``policy.lua`` (for the
fleet, through :mod:`common.guards.breaker.store`) and through these functions
(for a registry's per-process fallback), and the tests check both against a
small model.

States: ``closed`` (calls pass, outcomes are counted), ``open`` (calls are
refused until ``open_until``), ``half_open`` (the open time is over; exactly
``half_open_calls`` trial calls are admitted, each holding a lease that expires
after ``lease_seconds`` so a probe whose worker died frees its slot).

The breaker trips (closed -> open) when any rule that is switched on fires:

* ``failure_threshold`` consecutive failures (0 = off), a call that timed out
  counting as ``timeout_weight`` of them: it held its slot for the whole deadline,
  as long as a hundred ordinary failures, so a receiver that trickles its answer
  is refused after two such calls, not five;
* ``failure_rate``: failures / calls in the sliding window, once the window
  holds ``min_calls`` calls (0 = off);
* ``slow_call_rate``: calls slower than ``slow_call_seconds`` / calls, same
  minimum (0 = off).

The window is ``buckets`` buckets of ``window_seconds / buckets`` each. A
failed probe re-opens the breaker; ``half_open_calls`` successful probes close
it. The open time grows with each trip since the last close:
``backoff_ceiling(trips - 1, open_seconds, open_max_seconds)``, shortened by up
to ``jitter`` (a share) so breakers tripped together do not probe together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from common.support.backoff import backoff_ceiling

__all__ = [
    "ADMITTED",
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "PROBE_REPORT_MARGIN_SECONDS",
    "Admission",
    "BreakerPolicy",
    "BreakerState",
    "Change",
    "Outcomes",
    "admit",
    "force",
    "next_trial_in",
    "open_duration",
    "policy_from_settings",
    "probe_lease_seconds",
    "record",
    "record_probe",
    "settle",
    "trip_reason",
]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that trip the breaker; 0 = off
    timeout_weight: int = 3  # failures a timed-out call counts as, toward failure_threshold
    failure_rate: float = 0.5  # share of failed calls in the window that trips it; 0 = off
    min_calls: int = 10  # calls the window must hold before the rates are judged
    window_seconds: float = 30.0  # length of the sliding window
    slow_call_seconds: float = 10.0  # a call slower than this is slow
    slow_call_rate: float = 0.0  # share of slow calls in the window that trips it; 0 = off
    open_seconds: float = 5.0  # open time after the first trip
    open_max_seconds: float = 300.0  # longest open time, however many trips
    half_open_calls: int = 1  # trial calls admitted fleet-wide when half-open
    lease_seconds: float = 30.0  # a trial call's slot is freed after this if it never reports
    jitter: float = 0.2  # open time is shortened by up to this share, at random
    buckets: int = 10  # buckets of the sliding window

    def __post_init__(self) -> None:
        if min(self.half_open_calls, self.buckets, self.min_calls, self.timeout_weight) < 1:
            raise ValueError("half_open_calls, buckets, min_calls and timeout_weight must be >= 1")
        if (
            not (0 <= self.jitter < 1)
            or self.open_seconds <= 0
            or self.open_max_seconds < self.open_seconds
        ):
            raise ValueError("need 0 <= jitter < 1 and 0 < open_seconds <= open_max_seconds")

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / self.buckets


@dataclass(frozen=True)
class Outcomes:
    """Results of a batch of calls made while the breaker was closed."""

    calls: int = 0
    failures: int = 0
    slow: int = 0
    trailing_failures: int = 0  # failures after the batch's last success, weighted

    def plus(self, failed: bool, slow: bool = False, weight: int = 1) -> Outcomes:
        """With one more call; a failure counts ``weight`` toward the consecutive
        failures (``timeout_weight`` for a call that timed out)."""
        return Outcomes(
            self.calls + 1,
            self.failures + failed,
            self.slow + slow,
            self.trailing_failures + weight if failed else 0,
        )


@dataclass(frozen=True)
class BreakerState:
    state: str = CLOSED
    open_until: float = 0.0
    trips: int = 0  # trips since the breaker last closed; drives the open time
    total_trips: int = 0  # trips since the last reset, for operators
    consecutive: int = 0  # consecutive failures (fleet-wide, batch by batch)
    window: tuple[tuple[int, int, int, int], ...] = ()  # (bucket, calls, failures, slow)
    leases: tuple[tuple[str, float], ...] = ()  # half-open probes in flight: (id, expires at)
    probe_successes: int = 0
    forced: bool = False  # opened by an operator: stays open until closed by one
    reason: str = ""  # why the last transition happened


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: str | None = None  # lease id of a half-open trial call
    retry_in: float = 0.0  # when refused: seconds until asking again makes sense

    @property
    def reason(self) -> str:
        return "" if self.allowed else "open"


ADMITTED = Admission(True)


@dataclass(frozen=True)
class Change:
    """A transition worth telling people about (alarm set or cleared)."""

    old: str
    new: str
    reason: str


def open_duration(policy: BreakerPolicy, trips: int, u: float) -> float:
    """Open time after trip number ``trips`` (1-based); ``u`` is uniform in [0, 1)."""
    ceiling = backoff_ceiling(trips - 1, policy.open_seconds, policy.open_max_seconds)
    return ceiling * (1 - policy.jitter * u)


def settle(policy: BreakerPolicy, s: BreakerState, now: float) -> BreakerState:
    """Time passing: an open breaker whose time is over is half-open; expired leases are freed."""
    if s.state == OPEN and not s.forced and now >= s.open_until:
        s = replace(s, state=HALF_OPEN, leases=(), probe_successes=0)
    if s.state == HALF_OPEN and any(expires <= now for _, expires in s.leases):
        s = replace(s, leases=tuple(lease for lease in s.leases if lease[1] > now))
    return s


def admit(
    policy: BreakerPolicy, s: BreakerState, now: float, lease_id: str
) -> tuple[BreakerState, Admission]:
    """May a call go through now? A half-open admission takes lease ``lease_id``."""
    s = settle(policy, s, now)
    if s.state == CLOSED:
        return s, ADMITTED
    if s.state == OPEN:
        retry_in = policy.open_seconds if s.forced else s.open_until - now
        return s, Admission(False, retry_in=retry_in)
    if len(s.leases) + s.probe_successes < policy.half_open_calls:
        s = replace(s, leases=(*s.leases, (lease_id, now + policy.lease_seconds)))
        return s, Admission(True, probe=lease_id)
    soonest = min((expires for _, expires in s.leases), default=now + policy.open_seconds)
    return s, Admission(False, retry_in=min(policy.open_seconds, soonest - now))


def next_trial_in(
    policy: BreakerPolicy, s: BreakerState, now: float, trial_seconds: float
) -> float:
    """Seconds until the breaker can next admit a trial call, at the soonest, should
    the calls in flight fail: an open breaker's remaining open time; a half-open
    one's trial (at most ``trial_seconds``) plus the open time its failure would
    start, at its shortest. What a caller that waits in bulk (parked deliveries)
    waits for; a trial that succeeds is that caller's to announce."""
    s = settle(policy, s, now)
    if s.state == OPEN:
        return policy.open_seconds if s.forced else max(0.0, s.open_until - now)
    if s.state == HALF_OPEN:
        return trial_seconds + open_duration(policy, s.trips + 1, 1.0)
    return 0.0


def trip_reason(
    policy: BreakerPolicy, consecutive: int, calls: int, failures: int, slow: int
) -> str:
    if policy.failure_threshold and consecutive >= policy.failure_threshold:
        return f"{consecutive} consecutive failures"
    if calls >= policy.min_calls:
        if policy.failure_rate and failures / calls >= policy.failure_rate:
            return f"failure rate {failures}/{calls}"
        if policy.slow_call_rate and slow / calls >= policy.slow_call_rate:
            return f"slow-call rate {slow}/{calls}"
    return ""


def _trip(
    policy: BreakerPolicy, s: BreakerState, now: float, u: float, reason: str
) -> tuple[BreakerState, Change]:
    trips = s.trips + 1
    opened = BreakerState(
        state=OPEN,
        open_until=now + open_duration(policy, trips, u),
        trips=trips,
        total_trips=s.total_trips + 1,
        reason=reason,
    )
    return opened, Change(s.state, OPEN, reason)


def record(
    policy: BreakerPolicy, s: BreakerState, batch: Outcomes, now: float, u: float
) -> tuple[BreakerState, Change | None]:
    """Count a batch of outcomes of ordinary (non-probe) calls; trip if a rule fires.

    Outcomes reaching a breaker that is no longer closed are dropped: they are
    late results of calls admitted before the trip and say nothing new."""
    s = settle(policy, s, now)
    if s.state != CLOSED or batch.calls == 0:
        return s, None
    bucket = math.floor(now / policy.bucket_seconds)
    window = {b: [c, f, sl] for b, c, f, sl in s.window if b > bucket - policy.buckets}
    counts = window.setdefault(bucket, [0, 0, 0])
    counts[0] += batch.calls
    counts[1] += batch.failures
    counts[2] += batch.slow
    if batch.failures < batch.calls:
        consecutive = batch.trailing_failures
    else:
        consecutive = s.consecutive + batch.trailing_failures  # every one failed, weighted
    calls, failures, slow = (sum(v[i] for v in window.values()) for i in range(3))
    reason = trip_reason(policy, consecutive, calls, failures, slow)
    if reason:
        return _trip(policy, s, now, u, reason)
    packed = tuple(sorted((b, *v) for b, v in window.items()))
    return replace(s, window=packed, consecutive=consecutive), None


def record_probe(
    policy: BreakerPolicy, s: BreakerState, lease_id: str, failed: bool, now: float, u: float
) -> tuple[BreakerState, Change | None]:
    """The result of a half-open trial call. Results of expired leases are ignored."""
    s = settle(policy, s, now)
    if s.state != HALF_OPEN or lease_id not in (lid for lid, _ in s.leases):
        return s, None
    s = replace(s, leases=tuple(lease for lease in s.leases if lease[0] != lease_id))
    if failed:
        return _trip(policy, s, now, u, "trial call failed")
    s = replace(s, probe_successes=s.probe_successes + 1)
    if s.probe_successes >= policy.half_open_calls:
        closed = BreakerState(total_trips=s.total_trips, reason="trial calls succeeded")
        return closed, Change(HALF_OPEN, CLOSED, "trial calls succeeded")
    return s, None


def force(
    policy: BreakerPolicy, s: BreakerState, action: str, now: float
) -> tuple[BreakerState, Change | None]:
    """An operator's ``open`` (until closed), ``close`` or ``reset`` (close and forget
    the counts)."""
    s = settle(policy, s, now)
    if action == "open":
        new = BreakerState(
            state=OPEN, trips=s.trips, total_trips=s.total_trips, forced=True, reason="forced open"
        )
    elif action == "close":
        new = BreakerState(total_trips=s.total_trips, reason="forced closed")
    elif action == "reset":
        new = BreakerState(reason="reset")
    else:
        raise ValueError(f"unknown action {action!r}: use open, close or reset")
    was_open = s.state != CLOSED
    now_open = new.state != CLOSED
    change = Change(s.state, new.state, new.reason) if was_open != now_open else None
    return new, change


# Between a trial call's end and its report reaching Redis: a round trip, or a retried one.
PROBE_REPORT_MARGIN_SECONDS = 5.0


def probe_lease_seconds(settings: Any) -> float:
    """How long a trial call holds its half-open slot: ``BREAKER_PROBE_LEASE_SECONDS``,
    and never less than the longest delivery attempt (connect + total timeout) plus
    :data:`PROBE_REPORT_MARGIN_SECONDS`. A lease lapsing under a live trial would
    admit a second one while the first is still in flight (a slow receiver tried
    twice at once, ``half_open_calls`` broken); raising ``DELIVERY_TIMEOUT_SECONDS``
    alone must not do that."""
    attempt = settings.delivery_connect_timeout_seconds + settings.delivery_timeout_seconds
    return max(settings.breaker_probe_lease_seconds, attempt + PROBE_REPORT_MARGIN_SECONDS)


def policy_from_settings(settings: Any) -> BreakerPolicy:
    """The breaker policy the ``BREAKER_*`` settings describe (the probe lease
    stretched to the longest attempt, :func:`probe_lease_seconds`)."""
    return BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        timeout_weight=settings.breaker_timeout_weight,
        failure_rate=settings.breaker_failure_rate,
        min_calls=settings.breaker_min_calls,
        window_seconds=settings.breaker_window_seconds,
        slow_call_seconds=settings.breaker_slow_call_seconds,
        slow_call_rate=settings.breaker_slow_call_rate,
        open_seconds=settings.breaker_open_seconds,
        open_max_seconds=settings.breaker_open_max_seconds,
        half_open_calls=settings.breaker_half_open_calls,
        lease_seconds=probe_lease_seconds(settings),
    )
