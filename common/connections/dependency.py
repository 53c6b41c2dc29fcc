"""Level 1: PostgreSQL, Redis and the broker as dependencies that start
disconnected, connect in the background and reconnect after a loss.

The decision is a pure function of the last check, :func:`transition`, over a
:class:`DependencyState` record: ``connecting`` until the first check,
``up`` after a passing one, ``down`` after a failing one. The I/O is a thin
shell, :class:`DependencyMonitor`: one daemon thread per dependency that runs
a bounded check (``common.connections.probes``) every ``CHECK_INTERVAL_SECONDS`` while the
dependency is up, and after a failure waits ``full_jitter_backoff(attempt,
RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS)`` before the next try, so a
fleet restarting together does not reconnect in lock step.

Readers (``/up``, ``/health``, the worker's queue gate, ``/metrics``) never
touch a server: they read the last state, so a dead server costs a request
nothing. :class:`Dependencies` holds the three monitors of a process.

Tasks that find a dependency gone mid-run raise :class:`DependencyDown` (or
let a driver's connection error escape) and are retried with
:func:`retry_options`, never failed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from common.connections.probes import CheckResult, check_broker, check_postgres, check_redis
from common.support.backoff import full_jitter_backoff
from common.support.logs import log_event
from common.support.masking import mask_url

log = logging.getLogger("jenga.dependency")

State = Literal["connecting", "up", "down"]
NAMES = ("postgres", "redis", "broker")


@dataclass(frozen=True)
class DependencyState:
    """What a process knows about one dependency, as of its last check."""

    name: str
    state: State = "connecting"
    changed_at: float = 0.0  # wall-clock time of the last change of ``state``
    last_error: str | None = None  # one line, secrets masked; kept after recovery
    attempt: int = 0  # consecutive failed checks; picks the next backoff delay
    latency_seconds: float | None = None  # duration of the last check
    checked_at: float | None = None  # wall-clock time of the last check

    @property
    def up(self) -> bool:
        return self.state == "up"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "changed_at": self.changed_at,
            "last_error": self.last_error,
            "attempt": self.attempt,
            "latency_seconds": self.latency_seconds,
            "checked_at": self.checked_at,
        }


def initial_state(name: str, now: float) -> DependencyState:
    return DependencyState(name=name, state="connecting", changed_at=now)


def transition(current: DependencyState, result: CheckResult, now: float) -> DependencyState:
    """The state after one check. ``changed_at`` moves only when ``state`` does."""
    new_state: State = "up" if result.ok else "down"
    return replace(
        current,
        state=new_state,
        changed_at=now if new_state != current.state else current.changed_at,
        last_error=current.last_error if result.ok else result.error,
        attempt=0 if result.ok else current.attempt + 1,
        latency_seconds=result.latency_seconds,
        checked_at=now,
    )


def next_delay(
    state: DependencyState,
    interval: float,
    base: float,
    cap: float,
    rand: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds until the next check: the check interval while up, else backoff
    with full jitter on the number of failures so far."""
    if state.state == "up":
        return interval
    # attempt counts failures; the first retry (attempt 1) uses ceiling ``base``.
    return full_jitter_backoff(max(0, state.attempt - 1), base, cap, rand)


Listener = Callable[[DependencyState, DependencyState], None]


class DependencyMonitor:
    """Keeps one dependency's :class:`DependencyState` current from a
    background thread. ``start()`` returns at once; nothing here blocks boot."""

    def __init__(
        self,
        name: str,
        check: Callable[[], CheckResult],
        *,
        interval: float,
        base: float,
        cap: float,
        target: str = "",
        clock: Callable[[], float] = time.time,
        rand: Callable[[float, float], float] = random.uniform,
    ):
        self.name = name
        self.check = check  # the cheap, bounded check; callers may run it directly too
        self.interval = interval
        self.base = base
        self.cap = cap
        self.target = target  # masked URL, for logs only
        self._clock = clock
        self._rand = rand
        self._state = initial_state(name, clock())
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> DependencyState:
        return self._state  # one reference read: no lock needed

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(old, new)`` (from the monitor thread) on each change of state."""
        self._listeners.append(listener)

    def step(self) -> float:
        """Run one check, record it, and return the delay before the next one."""
        result = self.check()
        old = self._state
        new = transition(old, result, self._clock())
        self._state = new
        if new.state != old.state:
            self._announce(old, new)
        elif not result.ok and new.attempt in (10, 100, 1000):
            log_event(
                log,
                "dependency.still_down",
                logging.WARNING,
                dependency=self.name,
                target=self.target,
                attempts=new.attempt,
                error=new.last_error,
            )
        return next_delay(new, self.interval, self.base, self.cap, self._rand)

    def _announce(self, old: DependencyState, new: DependencyState) -> None:
        fields = {"error": new.last_error} if new.state == "down" else {}
        level = logging.WARNING if new.state == "down" else logging.INFO
        log_event(
            log,
            "dependency.state",
            level,
            dependency=self.name,
            target=self.target,
            state=new.state,
            previous=old.state,
            **fields,
        )
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:  # a broken listener must not stop the monitor
                log.exception("dependency listener failed (%s)", self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.step()
            except Exception as error:  # the checks don't raise; if one does, keep monitoring
                log.exception("dependency check crashed (%s): %s", self.name, error)
                delay = self.cap
            self._stop.wait(delay)

    def start(self) -> DependencyMonitor:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"jenga-dependency-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


class Dependencies:
    """The monitors of one process, by name (``postgres``, ``redis``, ``broker``)."""

    def __init__(self, monitors: Iterable[DependencyMonitor]):
        self.monitors = {m.name: m for m in monitors}

    @classmethod
    def from_settings(
        cls,
        settings,
        *,
        engine=None,
        redis=None,
        names: Iterable[str] = NAMES,
        clock: Callable[[], float] = time.time,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> Dependencies:
        """Monitors for ``names``, checking ``engine`` (SQLAlchemy), ``redis``
        (redis-py client) and a fresh connection to the broker URL."""
        timeout = settings.check_timeout_seconds
        checks: dict[str, tuple[Callable[[], CheckResult], str]] = {}
        for name in names:
            if name == "postgres":
                if engine is None:
                    raise ValueError("the postgres monitor needs an engine")
                checks[name] = (
                    lambda: check_postgres(engine, timeout),
                    mask_url(settings.database_url),
                )
            elif name == "redis":
                if redis is None:
                    raise ValueError("the redis monitor needs a client")
                checks[name] = (lambda: check_redis(redis), mask_url(settings.redis_url))
            elif name == "broker":
                url = settings.effective_broker_url
                checks[name] = (lambda url=url: check_broker(url, timeout), mask_url(url))
            else:
                raise ValueError(f"unknown dependency {name!r}; expected one of {', '.join(NAMES)}")
        return cls(
            DependencyMonitor(
                name,
                check,
                interval=settings.check_interval_seconds,
                base=settings.reconnect_base_seconds,
                cap=settings.reconnect_cap_seconds,
                target=target,
                clock=clock,
                rand=rand,
            )
            for name, (check, target) in checks.items()
        )

    def __getitem__(self, name: str) -> DependencyMonitor:
        return self.monitors[name]

    def start(self) -> Dependencies:
        for monitor in self.monitors.values():
            monitor.start()
        return self

    def stop(self) -> None:
        for monitor in self.monitors.values():
            monitor._stop.set()  # stop all first, then wait: shutdown costs one check, not three
        for monitor in self.monitors.values():
            monitor.stop()

    def snapshot(self) -> dict[str, DependencyState]:
        return {name: monitor.state for name, monitor in self.monitors.items()}

    def missing(self) -> list[str]:
        """Names of the dependencies that are not up, in order."""
        return [name for name, state in self.snapshot().items() if not state.up]

    def ready(self) -> bool:
        return not self.missing()

    def on_change(self, listener: Listener) -> None:
        for monitor in self.monitors.values():
            monitor.on_change(listener)


class DependencyDown(Exception):
    """A dependency a task needs is unreachable; the task is retried, not failed.

    Raise it when a task checks ``current_dependencies()`` before work, or wrap
    a driver error: ``raise DependencyDown("postgres") from error``."""

    def __init__(self, dependency: str = "a dependency", detail: str | None = None):
        self.dependency = dependency
        self.detail = detail
        super().__init__(f"{dependency} is unreachable" + (f": {detail}" if detail else ""))


def connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "a dependency went away", not "this task is wrong"."""
    import redis.exceptions
    import sqlalchemy.exc

    return (
        DependencyDown,
        sqlalchemy.exc.OperationalError,  # server gone, connect refused, timeout
        sqlalchemy.exc.InterfaceError,  # connection closed under us
        sqlalchemy.exc.TimeoutError,  # pool exhausted while the server hangs
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    )


def retry_options(base: int = 1, cap: int = 60) -> dict[str, Any]:
    """Celery task options that retry a task on :func:`connection_errors`
    forever, with backoff and full jitter (``@app.task(**retry_options())``).

    The retried message goes back to the broker with a countdown; the worker's
    queue gate has by then cancelled the consumer of a queue whose dependency
    is down, so it waits there instead of occupying a worker. Whole seconds:
    Celery's jitter draws with ``randrange``."""
    return {
        "autoretry_for": connection_errors(),
        "max_retries": None,
        "retry_backoff": base,
        "retry_backoff_max": cap,
        "retry_jitter": True,
    }
