"""The status page's delivery view, pure: the backlog level's thresholds, the bar of
endpoints by state and the backlog gauge's log scale (api/status_delivery.py)."""

from __future__ import annotations

import math

import pytest

from api.metrics import FleetView
from api.status import levels
from api.status_delivery import (
    BACKLOG_AMBER_SECONDS,
    BACKLOG_RED_SECONDS,
    backlog_gauge,
    backlog_level,
    endpoint_bar,
)
from api.status_level import AMBER, GREEN, RED
from common.delivery.overview import DUE_COUNT_CAP, DeliveryOverview

ENDPOINTS = {"healthy": 6, "failing": 1, "paused": 1, "disabled": 2}


def overview(oldest: float | None, due: int = 3) -> DeliveryOverview:
    return DeliveryOverview(ENDPOINTS, due if oldest is not None else 0, oldest)


@pytest.mark.parametrize(
    ("oldest", "color"),
    [
        (None, GREEN),
        (0.0, GREEN),
        (BACKLOG_AMBER_SECONDS - 1, GREEN),
        (BACKLOG_AMBER_SECONDS, AMBER),
        (BACKLOG_RED_SECONDS - 1, AMBER),
        (BACKLOG_RED_SECONDS, RED),
        (3 * 86400, RED),
    ],
)
def test_the_backlog_level_judges_how_long_the_first_due_delivery_waited(oldest, color):
    assert backlog_level(overview(oldest), None).color == color


def test_the_backlog_level_says_how_many_are_due_and_since_when():
    assert backlog_level(overview(None), None).summary == "nothing due"
    assert backlog_level(overview(900.0), None).summary == "3 due now, the oldest waiting 15 min"
    capped = backlog_level(overview(5.0, DUE_COUNT_CAP), None).summary
    assert capped.startswith(f"{DUE_COUNT_CAP}+ due now")  # counted up to the cap only


def test_an_unreadable_backlog_is_red_and_unknown():
    level = backlog_level(None, "PostgreSQL is unreachable")
    assert (level.name, level.color, level.summary) == (
        "backlog",
        RED,
        "unknown: PostgreSQL is unreachable",
    )


def test_the_backlog_level_comes_last_among_the_levels():
    view = FleetView(alarms=[], breakers=[], limits=[], workers=[])
    names = [lv.name for lv in levels(view, {}, "ns", backlog=backlog_level(None, "down"))]
    assert names[-2:] == ["delivery", "backlog"]


def test_the_endpoint_bar_splits_the_width_by_state_in_order():
    bar = endpoint_bar(ENDPOINTS, width=200)
    assert [s["state"] for s in bar] == ["healthy", "failing", "paused", "disabled"]
    assert [s["count"] for s in bar] == [6, 1, 1, 2]
    assert [s["width"] for s in bar] == [120.0, 20.0, 20.0, 40.0]
    assert [s["x"] for s in bar] == [0.0, 120.0, 140.0, 160.0]
    assert endpoint_bar({"healthy": 0, "failing": 0, "paused": 0, "disabled": 0}) == []


def test_one_endpoint_in_thousands_still_shows_and_the_bar_keeps_its_width():
    bar = endpoint_bar({"healthy": 9999, "failing": 0, "paused": 0, "disabled": 1}, width=240)
    assert [s["state"] for s in bar] == ["healthy", "disabled"]  # empty states leave no segment
    assert bar[1]["width"] >= 1.9
    assert math.isclose(sum(s["width"] for s in bar), 240, abs_tol=0.2)


def test_the_gauge_is_a_log_scale_from_a_second_to_a_day():
    assert backlog_gauge(None, 240)["fill"] == 0.0
    assert backlog_gauge(0.2, 240)["fill"] == 0.0  # under a second: empty
    assert backlog_gauge(86400.0, 240)["fill"] == 240.0
    assert backlog_gauge(10 * 86400.0, 240)["fill"] == 240.0  # past a day: full, not beyond
    gauge = backlog_gauge(BACKLOG_AMBER_SECONDS, 240)
    assert gauge["fill"] == gauge["amber"] < gauge["red"] < 240
