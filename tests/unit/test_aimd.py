"""The AIMD rule as a pure function: properties over random windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import load_settings
from common.guards.limit.aimd import AIMDOptions, Window, classify, initial, update


@st.composite
def options(draw) -> AIMDOptions:
    low = draw(st.integers(1, 50))
    high = draw(st.integers(low, 400))
    return AIMDOptions(
        initial=draw(st.integers(low, high)),
        min=low,
        max=high,
        backoff_ratio=draw(st.floats(0.05, 0.99)),
        step=draw(st.integers(1, 20)),
        latency_target=draw(st.floats(0.001, 10.0)),
        window=draw(st.floats(0.05, 10.0)),
    )


@st.composite
def windows(draw) -> Window:
    count = draw(st.integers(0, 10_000))
    return Window(
        count=count,
        drops=draw(st.integers(0, count)),
        max_in_flight=draw(st.integers(0, 500)),
        avg_latency=draw(st.floats(0.0, 20.0)) if count else 0.0,
    )


@given(options(), st.integers(1, 1000), windows())
def test_limit_always_within_bounds(opts, limit, window):
    assert opts.min <= update(limit, window, opts) <= opts.max


@given(options(), windows())
def test_a_drop_never_increases_the_limit(opts, window):
    limit = opts.initial
    dropped = Window(
        max(window.count, 1), max(window.drops, 1), window.max_in_flight, window.avg_latency
    )
    new = update(limit, dropped, opts)
    assert new <= limit
    assert new == max(opts.min, math.floor(limit * opts.backoff_ratio))
    if limit > opts.min:
        assert new < limit  # the floor makes every drop bite, even at small limits


@given(options(), st.integers(1, 1000), windows())
def test_growth_only_with_load_and_no_drop(opts, limit, window):
    limit = min(max(limit, opts.min), opts.max)
    new = update(limit, window, opts)
    if new > limit:
        assert window.count > 0 and window.drops == 0
        assert window.avg_latency <= opts.latency_target
        assert window.max_in_flight * 2 >= limit
        assert new == min(opts.max, limit + opts.step)


@given(options(), st.integers(1, 1000), st.integers(0, 500))
def test_an_empty_window_changes_nothing_but_bounds(opts, limit, in_flight):
    assert update(limit, Window(0, 0, in_flight, 0.0), opts) == min(opts.max, max(opts.min, limit))
    assert classify(limit, Window(0, 0, in_flight, 0.0), opts) == "steady"


@given(options(), windows())
def test_slow_window_backs_off_like_a_drop(opts, window):
    slow = Window(max(window.count, 1), 0, window.max_in_flight, opts.latency_target * 2 + 0.001)
    assert classify(opts.initial, slow, opts) == "latency"
    assert update(opts.initial, slow, opts) == max(
        opts.min, math.floor(opts.initial * opts.backoff_ratio)
    )


@given(options())
def test_repeated_drops_reach_the_floor(opts):
    limit = opts.max
    for _ in range(opts.max - opts.min):
        limit = update(limit, Window(1, 1, 0, 0.0), opts)
    assert limit == opts.min


@given(options())
def test_sustained_load_reaches_the_ceiling(opts):
    limit = initial(opts)
    for _ in range(opts.max):
        limit = update(limit, Window(10, 0, limit, 0.0), opts)
    assert limit == opts.max


def test_idle_demand_keeps_the_limit():
    opts = AIMDOptions(initial=20)
    assert update(20, Window(count=50, drops=0, max_in_flight=9, avg_latency=0.01), opts) == 20
    assert update(20, Window(count=50, drops=0, max_in_flight=10, avg_latency=0.01), opts) == 21


def test_window_from_counters_averages_microseconds():
    assert Window.from_counters(4, 1, 3, 2_000_000).avg_latency == 0.5
    assert Window.from_counters(0, 0, 3, 0).avg_latency == 0.0


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"min": 0}, "min must be >= 1"),
        ({"min": 5, "max": 4, "initial": 4}, "max must be >= min"),
        ({"initial": 500}, "initial must be between min and max"),
        ({"backoff_ratio": 1.0}, "backoff_ratio"),
        ({"step": 0}, "step must be >= 1"),
        ({"latency_target": 0}, "latency_target"),
        ({"window": -1}, "window"),
    ],
)
def test_bad_options_are_named(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        AIMDOptions(**kwargs)


def test_options_from_settings(settings_env):
    settings = load_settings(
        {
            **settings_env,
            "LIMIT_INITIAL": "7",
            "LIMIT_MIN": "2",
            "LIMIT_MAX": "9",
            "LIMIT_BACKOFF_RATIO": "0.5",
            "LIMIT_STEP": "3",
            "LIMIT_LATENCY_TARGET_SECONDS": "0.25",
            "LIMIT_WINDOW_SECONDS": "2",
        },
        wait_seconds=0,
    )
    assert AIMDOptions.from_settings(settings) == AIMDOptions(
        initial=7, min=2, max=9, backoff_ratio=0.5, step=3, latency_target=0.25, window=2.0
    )


def test_settings_refuse_an_initial_limit_outside_the_bounds(settings_env):
    from common.config import ConfigError

    with pytest.raises(ConfigError, match="LIMIT_INITIAL must be between"):
        load_settings({**settings_env, "LIMIT_INITIAL": "300"}, wait_seconds=0)
