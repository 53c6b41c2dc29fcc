"""Level 4: the AIMD concurrency-limit rule: additive increase, multiplicative decrease.

A loss-based adaptive limit after Netflix ``concurrency-limits`` (``AIMDLimit``)
and Regulator (``Regulator.Limit.AIMD``). Once per window the limit is updated
from the samples of that window alone:

* **drop** — any call in the window failed (error, timeout, 429/503) or the
  average latency was above ``latency_target``: the limit is multiplied by
  ``backoff_ratio`` and rounded down;
* **load** — otherwise, if the most calls in flight at once reached half the
  limit, the limit grows by ``step`` (the service kept up with real demand);
* **steady** — otherwise (demand well below the limit, or no samples at all),
  the limit stays: there is no evidence the service could take more.

The result is always bounded by ``min`` and ``max``. Unlike Regulator, the limit
is *not* halved when it touches ``max``: that saw-tooth throws away capacity the
service just proved it has, and Netflix' rule does without it.

Options (``AIMDOptions``; from settings with :meth:`AIMDOptions.from_settings`):

* ``initial`` (20) — the limit of a service never seen before;
* ``min`` (1) — the floor; also the per-process limit when Redis is unreachable;
* ``max`` (200) — the ceiling;
* ``backoff_ratio`` (0.9) — multiplier applied on a drop, in (0, 1);
* ``step`` (1) — slots added when the window showed load and no drop;
* ``latency_target`` (5.0 s) — an average latency above this counts as a drop;
* ``window`` (1.0 s) — how long samples are collected before one update.

The rule is a pure function of ``(limit, window, options)``; its twin
``aimd.lua`` runs the very same arithmetic atomically in Redis for the fleet-wide
:mod:`common.guards.limit.shared`, and a test checks that the two agree on random windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["AIMDOptions", "Reason", "Window", "classify", "initial", "update"]

Reason = Literal["drop", "latency", "load", "steady"]


@dataclass(frozen=True)
class AIMDOptions:
    """Tuning of one adaptive limit; see the module doc for each option."""

    initial: int = 20
    min: int = 1
    max: int = 200
    backoff_ratio: float = 0.9
    step: int = 1
    latency_target: float = 5.0
    window: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.min < 1:
            problems.append("min must be >= 1")
        if self.max < self.min:
            problems.append("max must be >= min")
        if not self.min <= self.initial <= self.max:
            problems.append("initial must be between min and max")
        if not 0 < self.backoff_ratio < 1:
            problems.append("backoff_ratio must be between 0 and 1 (exclusive)")
        if self.step < 1:
            problems.append("step must be >= 1")
        if not self.latency_target > 0:
            problems.append("latency_target must be > 0")
        if not self.window > 0:
            problems.append("window must be > 0")
        if problems:
            raise ValueError("invalid AIMD options: " + "; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Any) -> AIMDOptions:
        """The options named by the ``LIMIT_*`` settings."""
        return cls(
            initial=settings.limit_initial,
            min=settings.limit_min,
            max=settings.limit_max,
            backoff_ratio=settings.limit_backoff_ratio,
            step=settings.limit_step,
            latency_target=settings.limit_latency_target_seconds,
            window=settings.limit_window_seconds,
        )


@dataclass(frozen=True)
class Window:
    """What one window saw: ``count`` finished calls, ``drops`` among them,
    ``max_in_flight`` calls at once, ``avg_latency`` seconds per call."""

    count: int = 0
    drops: int = 0
    max_in_flight: int = 0
    avg_latency: float = 0.0

    @classmethod
    def from_counters(cls, count: int, drops: int, max_in_flight: int, latency_us: int) -> Window:
        """A window from the integer counters kept in Redis (latency summed in
        microseconds); the division is written exactly as the Lua script does it
        so both compute the same float."""
        avg = (latency_us / count) / 1e6 if count > 0 else 0.0
        return cls(count=count, drops=drops, max_in_flight=max_in_flight, avg_latency=avg)


def initial(options: AIMDOptions) -> int:
    """The limit of a service with no history."""
    return options.initial


def classify(limit: int, window: Window, options: AIMDOptions) -> Reason:
    """Which branch of the rule this window takes."""
    if window.count <= 0:
        return "steady"
    if window.drops > 0:
        return "drop"
    if window.avg_latency > options.latency_target:
        return "latency"
    if window.max_in_flight * 2 >= limit:
        return "load"
    return "steady"


def update(limit: int, window: Window, options: AIMDOptions) -> int:
    """The limit after ``window``, bounded by ``options.min`` and ``options.max``."""
    reason = classify(limit, window, options)
    if reason in ("drop", "latency"):
        new = math.floor(limit * options.backoff_ratio)
    elif reason == "load":
        new = limit + options.step
    else:
        new = limit
    return min(options.max, max(options.min, int(new)))
