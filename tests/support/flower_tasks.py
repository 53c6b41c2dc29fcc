"""Tasks for the Flower test (loaded into its worker with ``-I tests.support.flower_tasks``):
``tests.flower.guarded`` calls a guarded service, ``tests.flower.broken`` fails
like an ordinary bug. No tests here."""

from __future__ import annotations

from worker.app import app
from worker.guarded import GuardedTask


@app.task(
    name="tests.flower.guarded",
    bind=True,
    base=GuardedTask,
    service="flower-svc",
    max_deferrals=2,
    ignore_result=True,
)
def guarded(self) -> None:
    return None


@app.task(name="tests.flower.broken", ignore_result=True)
def broken() -> None:
    raise ValueError("an ordinary bug")
