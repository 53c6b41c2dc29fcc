"""Delays between retries: exponential backoff with full jitter.

``full_jitter_backoff(attempt, base, cap)`` is ``uniform(0, min(cap, base * 2**attempt))``
(AWS Architecture Blog, "Exponential Backoff And Jitter"). Full jitter spreads
the retries of many processes that failed together, so a fleet restarting at
once does not reconnect in lock step.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The largest delay allowed before retry number ``attempt`` (0-based)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # 2**attempt overflows float for large attempts; the cap is reached long before.
    if attempt > 62:
        return cap
    return min(cap, base * (2**attempt))


def full_jitter_backoff(
    attempt: int,
    base: float,
    cap: float,
    rand: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait before retry number ``attempt``: uniform in
    ``[0, min(cap, base*2**attempt)]``."""
    return rand(0.0, backoff_ceiling(attempt, base, cap))
