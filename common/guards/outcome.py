"""Level 4: what counts as a failed call of a service we do not control.

An HTTP answer fails when it is a 5xx (the service is broken) or a 429 (it asks
us to slow down); an attempt that got no answer at all (connection refused,
timeout) fails too. Both the circuit breaker and the adaptive limit are told
this one verdict.
"""

from __future__ import annotations

from typing import Any

__all__ = ["failed_status", "result_failed"]


def failed_status(status: int | None) -> bool:
    """The verdict on one HTTP attempt: ``status`` is the answer's code, ``None``
    when there was no answer."""
    return status is None or status >= 500 or status == 429


def result_failed(result: Any) -> bool:
    """The verdict on a task's result: an HTTP-like result (an ``int`` ``status_code``)
    fails by :func:`failed_status`; any other result is not an HTTP answer and passes."""
    status = getattr(result, "status_code", None)
    return isinstance(status, int) and failed_status(status)
