"""The leases a worker process holds by task (worker/delivery/in_flight.py)."""

from worker.delivery.in_flight import InFlight
from worker.delivery.queries import Claim


def claim(n: int) -> Claim:
    return Claim(f"dlv_{n}", f"msg_{n}", f"token{n}", "{}", 0, "ep_1", "http://x", "s", False)


def test_a_task_that_ends_hands_back_its_claim_once():
    held = InFlight()
    held.hold("task-1", claim(1))
    assert held.end("task-1") == claim(1)
    assert held.end("task-1") is None


def test_take_all_empties_the_registry():
    held = InFlight()
    held.hold("task-1", claim(1))
    held.hold("task-2", claim(2))
    assert sorted(c.message_id for c in held.take_all()) == ["msg_1", "msg_2"]
    assert held.take_all() == [] and held.end("task-1") is None


def test_a_retried_task_holds_only_its_latest_claim():
    held = InFlight()
    held.hold("task-1", claim(1))
    held.hold("task-1", claim(2))
    assert held.take_all() == [claim(2)]
