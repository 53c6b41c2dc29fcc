"""``GET /status``: the colour rules of each level (pure), the sparkline
scaling, and the real page in headless Chromium with PostgreSQL down."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from api.metrics import FleetView
from api.status import AMBER, GREEN, RED, beat_level, levels, sparkline
from common.alarms.store import AlarmStore
from common.connections.dependency import DependencyState
from common.guards.breaker.registry import policy_from_settings
from common.guards.breaker.store import BreakerStore
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.health.fleet_metrics import FleetMetrics
from tests.support.servers import ROOT, JengaProcess, free_port, jenga_env, wait_for

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"


def colors(view: FleetView, history=None) -> dict[str, str]:
    return {
        level.name: level.color
        for level in levels(view, history if history is not None else {}, "ns")
    }


def healthy_view(**changes) -> FleetView:
    view = FleetView(
        dependencies={n: DependencyState(n, "up") for n in ("postgres", "redis", "broker")},
        alarms=[],
        breakers=[],
        limits=[],
        queues={},
        workers=[{"consumer_connected": True}],
    )
    for name, value in changes.items():
        setattr(view, name, value)
    return view


def test_all_green_when_everything_is_fine():
    assert set(colors(healthy_view()).values()) == {GREEN}


def test_a_down_dependency_turns_connections_and_health_red():
    view = healthy_view()
    view.dependencies["postgres"] = DependencyState("postgres", "down", last_error="refused")
    got = colors(view)
    assert (got["connections"], got["health"]) == (RED, RED)
    view.dependencies["postgres"] = DependencyState("postgres", "connecting")
    assert colors(view)["connections"] == AMBER


def test_alarm_breaker_limit_rules():
    assert colors(healthy_view(alarms=[{"id": "x", "severity": "critical"}]))["alarms"] == RED
    assert colors(healthy_view(alarms=[{"id": "x", "severity": "warning"}]))["alarms"] == AMBER
    assert colors(healthy_view(breakers=[{"name": "s", "state": "open"}]))["breakers"] == RED
    assert colors(healthy_view(breakers=[{"name": "s", "state": "half_open"}]))["breakers"] == AMBER


def test_a_customers_receiver_breaker_is_amber_unless_listed_critical():
    """One flapping customer endpoint must not turn the page red and hide an incident."""
    view = healthy_view(breakers=[{"name": "webhook:hooks.acme.example", "state": "open"}])
    assert colors(view)["breakers"] == AMBER
    listed = levels(view, {}, "ns", ("webhook:*.acme.example",))
    assert [lv.color for lv in listed if lv.name == "breakers"] == [RED]
    assert (
        colors(healthy_view(limits=[{"service": "s", "limit": 3, "in_flight": 3}]))["limits"]
        == AMBER
    )
    assert (
        colors(healthy_view(limits=[{"service": "s", "limit": 3, "in_flight": 2}]))["limits"]
        == GREEN
    )
    assert colors(healthy_view(workers=[]))["health"] == RED
    fallback = {
        "consumer_connected": True,
        "hostname": "w1",
        "breakers": {"fallback": True, "processes": 1},
    }
    assert colors(healthy_view(workers=[fallback]))["breakers"] == AMBER


def test_unreadable_sections_are_red_not_green():
    view = healthy_view(alarms=None, breakers=None, limits=None, workers=None)
    view.errors = {"alarms": "Redis is unreachable"}
    got = colors(view, history=None)
    assert got["alarms"] == got["breakers"] == got["limits"] == got["health"] == RED
    assert [lv for lv in levels(view, None, "ns") if lv.name == "delivery"][0].color == RED


def test_delivery_level_judges_the_recent_failure_share():
    def history(deliveries, failures):
        return {
            "svc": [{"minute": 0, "deliveries": 0, "failures": 0, "limit": None}] * 59
            + [{"minute": 60, "deliveries": deliveries, "failures": failures, "limit": 5}]
        }

    assert colors(healthy_view(), history(10, 0))["delivery"] == GREEN
    assert colors(healthy_view(), history(10, 2))["delivery"] == AMBER
    assert colors(healthy_view(), history(10, 5))["delivery"] == RED


def test_beat_level_is_red_without_a_beat_amber_between_holders_green_with_one():
    from common.health.beat_store import BeatRecord

    def record(**fields):
        return BeatRecord(now=100.0, token=3, **fields)

    assert beat_level(None, None, 1.0).color == RED  # never a beat
    assert beat_level(None, "Redis is unreachable", 1.0).color == RED
    assert beat_level(record(watchdogs_at=90.0), None, 3.0).color == RED
    assert beat_level(record(watchdogs_at=99.0), None, 3.0).color == AMBER
    green = beat_level(record(watchdogs_at=99.0, holder="b1:7:x", expires_at=101.0), None, 3.0)
    assert green.color == GREEN and "b1:7:x schedules (token 3)" in green.summary
    view = healthy_view()
    listed = levels(view, {}, "ns", beat=green)
    assert [lv.name for lv in listed][2:4] == ["health", "beat"]


def test_sparkline_scales_into_the_box_and_skips_gaps():
    assert sparkline([0, 5, 10], width=100, height=40) == "0.0,39.0 50.0,20.0 100.0,1.0"
    assert sparkline([None, 2, None], width=100, height=40) == "50.0,1.0"
    assert sparkline([], width=100, height=40) == ""


def chromium_or_skip():
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)")
    return sync_playwright


@pytest.mark.slow
def test_status_page_in_chromium_shows_postgres_down_and_its_alarm(
    settings, settings_env, redis_client, namespace
):
    sync_playwright = chromium_or_skip()
    AlarmStore(redis_client, namespace).set(
        "postgres", "PostgreSQL unreachable", severity="critical"
    )
    BreakerStore(redis_client, namespace).force(
        "hooks.example", "open", policy_from_settings(settings)
    )
    limit = SharedLimit(
        redis_client,
        namespace,
        "hooks.example",
        AIMDOptions(initial=6, min=1, max=10),
        background=False,
    )
    limit.try_acquire().release()  # the limit exists in Redis once used
    metrics = FleetMetrics(redis_client, namespace)
    for outcome in ("delivered", "delivered", "failed"):
        metrics.record_delivery(outcome, 0.05, "hooks.example")

    port, ops_port = free_port(), free_port()
    closed = free_port()  # nothing listens there: PostgreSQL is "down"
    env = dict(
        settings_env,
        PORT=str(port),
        OPS_PORT=str(ops_port),  # the private listener: a browser there needs no key
        DATABASE_URL=f"postgresql://jenga:pw@127.0.0.1:{closed}/jenga",
        CHECK_INTERVAL_SECONDS="0.2",
        CHECK_TIMEOUT_SECONDS="0.5",
    )
    api = JengaProcess.api(jenga_env(**env)).start()
    base = f"http://127.0.0.1:{ops_port}"
    try:
        wait_for(
            lambda: "postgres down" in httpx.get(f"{base}/status", timeout=2).text,
            30,
            what="postgres down on /status",
        )
        # The same page on the public listener needs an admin key.
        assert httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code in (401, 403)
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 1300})
                response = page.goto(f"{base}/status")
                assert response.status == 200
                connections = page.locator('tr[data-level="connections"]')
                assert connections.get_attribute("data-color") == "red"
                # Red must be visible, not only an attribute: the pill's computed colour.
                pill = connections.locator(".pill")
                assert pill.inner_text() == "red"
                assert (
                    pill.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(198, 40, 40)"
                )
                assert page.locator('tr[data-level="alarms"]').get_attribute("data-color") == "red"
                beat = page.locator('tr[data-level="beat"]')  # no beat ran in this namespace
                assert beat.get_attribute("data-color") == "red"
                assert "no beat has ever run" in beat.inner_text()
                alarm = page.locator('tr[data-alarm="postgres"]')
                assert "PostgreSQL unreachable" in alarm.inner_text()
                assert (
                    page.locator('tr[data-dependency="postgres"]').inner_text().split()[1] == "down"
                )
                assert "open" in page.locator('tr[data-breaker="hooks.example"]').inner_text()
                assert page.locator('tr[data-limit="hooks.example"]').count() == 1
                chart = page.locator('div[data-chart="hooks.example"]')
                assert "3 deliveries, 1 failed" in chart.inner_text()
                assert chart.locator("polyline").count() == 2
                assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "10"
                page.screenshot(
                    path=str(Path(ARTIFACTS) / "status_postgres_down.png"), full_page=True
                )
            finally:
                browser.close()
    finally:
        api.stop()
        limit.close()
