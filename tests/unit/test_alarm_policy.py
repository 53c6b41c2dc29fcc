"""The pure hysteresis rule, checked against a small model (Hypothesis stateful)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from common.alarms.policy import CLOSED, AlarmState, decide, decide_clear, decide_set


class HysteresisMachine(RuleBasedStateMachine):
    """The model remembers raw facts (results since the alarm opened, the list
    of transitions) instead of a counter, so it is a different formulation."""

    @initialize(clear_after=st.integers(1, 5))
    def start(self, clear_after):
        self.clear_after = clear_after
        self.state = CLOSED
        self.transitions: list[str] = []
        self.results_since_set: list[bool] = []

    def model_open(self) -> bool:
        return bool(self.transitions) and self.transitions[-1] == "set"

    @rule(ok=st.booleans())
    def check(self, ok):
        was_open = self.model_open()
        self.state, kind = decide(self.state, ok, self.clear_after)
        if not was_open:
            expected = None if ok else "set"
        else:
            self.results_since_set.append(ok)
            trailing = 0
            for result in reversed(self.results_since_set):
                if not result:
                    break
                trailing += 1
            expected = "clear" if trailing == self.clear_after else None
        assert kind == expected
        if kind:
            self.transitions.append(kind)
            self.results_since_set = []

    @rule()
    def direct_set(self):
        self.state, kind = decide_set(self.state)
        assert kind == (None if self.model_open() else "set")
        if kind:
            self.transitions.append(kind)
            self.results_since_set = []

    @rule()
    def direct_clear(self):
        self.state, kind = decide_clear(self.state)
        assert kind == ("clear" if self.model_open() else None)
        if kind:
            self.transitions.append(kind)

    @invariant()
    def sets_and_clears_alternate(self):
        # No clear without a prior set, no second set while open.
        for index, kind in enumerate(self.transitions):
            assert kind == ("set" if index % 2 == 0 else "clear")
        assert self.state.open == self.model_open()


TestHysteresis = HysteresisMachine.TestCase


@given(st.integers(1, 6))
def test_a_failing_check_always_resets_the_pass_count(clear_after):
    state, _ = decide(CLOSED, False, clear_after)
    for _ in range(clear_after - 1):
        state, kind = decide(state, True, clear_after)
        assert kind is None
    state, kind = decide(state, False, clear_after)
    assert kind is None and state == AlarmState(open=True, passes=0)
    for _ in range(clear_after - 1):
        state, kind = decide(state, True, clear_after)
    assert kind is None
    assert decide(state, True, clear_after) == (CLOSED, "clear")


def test_clear_after_must_be_positive():
    with pytest.raises(ValueError):
        decide(CLOSED, True, 0)
