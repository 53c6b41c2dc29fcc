"""What counts as a failed call (common/guards/outcome.py): 5xx, 429, or no answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from common.guards.outcome import failed_status, result_failed


@pytest.mark.parametrize(
    ("status", "failed"),
    [
        (None, True),
        (200, False),
        (204, False),
        (301, False),
        (404, False),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
    ],
)
def test_failed_status(status, failed):
    assert failed_status(status) is failed


def test_only_http_like_results_can_fail():
    assert result_failed(SimpleNamespace(status_code=503))
    assert result_failed(SimpleNamespace(status_code=429))
    assert not result_failed(SimpleNamespace(status_code=200))
    assert not result_failed(SimpleNamespace(status_code=None))  # no code: not an HTTP answer
    assert not result_failed("ok") and not result_failed(None)
