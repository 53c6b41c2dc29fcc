"""Level 4: this process's concurrency limits, and the one thread that syncs them all.

A worker that has called 10,000 receivers has one sync thread, not 10,000: every
:class:`~common.guards.limit.shared.SharedLimit` that syncs in the background
(``background=True``, the default) joins this loop when it takes slots from Redis
and leaves it once a sync has returned its last idle slot and reported its last
sample. So one pass costs in proportion to the limits *in use*, not to every
service this process has ever called.

:meth:`LimitRegistry.get` keeps one limit per service (``worker/guarded.py``).
A limit unused for its ``idle_evict_seconds`` (``GUARD_IDLE_EVICT_SECONDS``) is
dropped by :meth:`LimitRegistry.evict_idle` (the loop runs it every
``evict_interval``): by then it holds no slot and owes Redis no sample, and what
it learnt (the limit itself) lives in Redis, where its successor's first sync
reads it again. A limit with a call in flight, or running on its local fallback
limit (Redis unreachable: a fresh one would forget the retry backoff), is kept.

The registry of a process is :func:`process_limits` (a ``PerProcess``): a forked
child builds its own, with its own thread. An explicitly built registry resets
itself in a forked child too (its thread does not survive the fork).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

from common.connections.probes import describe_error
from common.support.logs import log_event
from common.support.per_process import PerProcess

__all__ = ["LimitRegistry", "SyncedLimit", "current_limits", "process_limits"]

log = logging.getLogger("jenga.limit")

SYNC_INTERVAL_SECONDS = 0.1  # the longest pause between two syncs of a limit in use
EVICT_INTERVAL_SECONDS = 30.0


class SyncedLimit(Protocol):
    """What the loop needs from a limit (``SharedLimit``)."""

    service: str
    sync_interval: float

    @property
    def in_use(self) -> bool: ...

    def sync_in_background(self) -> bool: ...

    def evictable(self) -> bool: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=SyncedLimit)


def _reset_in_child(ref: weakref.ref[LimitRegistry]) -> Callable[[], None]:
    def after_fork_in_child() -> None:
        registry = ref()
        if registry is not None:
            registry._init_process_state()

    return after_fork_in_child


class LimitRegistry:
    """This process's limits by service, and the loop that syncs those in use.

    ``background=False`` starts no thread: the caller runs :meth:`sync_active`
    and :meth:`evict_idle` itself (tests, benchmarks)."""

    def __init__(
        self,
        *,
        background: bool = True,
        sync_interval: float = SYNC_INTERVAL_SECONDS,
        evict_interval: float = EVICT_INTERVAL_SECONDS,
    ):
        self.background = background
        self.sync_interval = sync_interval
        self.evict_interval = evict_interval
        self._by_service: dict[str, SyncedLimit] = {}
        self._init_process_state()
        os.register_at_fork(after_in_child=_reset_in_child(weakref.ref(self)))

    def _init_process_state(self) -> None:
        self._lock = threading.Lock()
        self._active: set[SyncedLimit] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the limits ------------------------------------------------------------
    def get(self, service: str, build: Callable[[str], L]) -> L:
        """The limit of ``service``, built by ``build(service)`` on first use."""
        found = self._by_service.get(service)
        if found is not None:
            return found  # type: ignore[return-value]
        with self._lock:
            if service not in self._by_service:
                self._by_service[service] = build(service)
            return self._by_service[service]  # type: ignore[return-value]

    def limits(self) -> list[SyncedLimit]:
        """The limits :meth:`get` holds now."""
        return list(self._by_service.values())

    def active(self) -> list[SyncedLimit]:
        """The limits the loop syncs now (holding slots or samples)."""
        with self._lock:
            return list(self._active)

    # --- the loop -------------------------------------------------------------
    def activate(self, limit: SyncedLimit) -> None:
        """Sync ``limit`` in the background until it holds nothing (the limit calls this,
        under its own lock, when it took slots from Redis)."""
        with self._lock:
            self._active.add(limit)
            self.sync_interval = min(self.sync_interval, limit.sync_interval)
            if self.background and self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="jenga-limit-sync", daemon=True
                )
                self._thread.start()

    def deactivate(self, limit: SyncedLimit) -> None:
        """Stop syncing ``limit`` (it was closed)."""
        with self._lock:
            self._active.discard(limit)

    def sync_active(self) -> None:
        """One pass of the loop: sync every limit in use; forget those left with nothing."""
        for limit in self.active():
            try:
                still_in_use = limit.sync_in_background()
            except Exception as error:  # the loop must outlive any surprise
                log_event(
                    log,
                    "limit.sync_failed",
                    logging.WARNING,
                    service=limit.service,
                    error=describe_error(error),
                )
                continue
            if not still_in_use:
                with self._lock:
                    # The limit may have taken slots again since (in_use is set under its
                    # lock before it calls activate): keep it then.
                    if not limit.in_use:
                        self._active.discard(limit)

    def evict_idle(self) -> list[str]:
        """Drop the limits idle past their ``idle_evict_seconds``; the services dropped."""
        with self._lock:
            candidates = list(self._by_service.items())
        evicted = []
        for service, limit in candidates:
            if limit.evictable():
                with self._lock:
                    if self._by_service.get(service) is limit:
                        del self._by_service[service]
                        evicted.append(service)
        if evicted:
            log_event(log, "limit.evicted", count=len(evicted), kept=len(self._by_service))
        return evicted

    def _run(self) -> None:
        stop = self._stop
        next_eviction = time.monotonic() + self.evict_interval
        while not stop.wait(self.sync_interval):
            self.sync_active()
            if time.monotonic() >= next_eviction:
                next_eviction = time.monotonic() + self.evict_interval
                try:
                    self.evict_idle()
                except Exception as error:  # the loop must outlive any surprise
                    log_event(
                        log, "limit.evict_failed", logging.WARNING, error=describe_error(error)
                    )

    def close(self) -> None:
        """Stop the loop, give every limit's idle slots back, and forget them all."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            limits = {*self._by_service.values(), *self._active}
            self._by_service, self._active = {}, set()
        for limit in limits:
            limit.close()


_process: PerProcess[LimitRegistry] = PerProcess(LimitRegistry)


def process_limits() -> LimitRegistry:
    """This process's registry (built on first use, again after a fork)."""
    return _process.get()


def current_limits() -> LimitRegistry | None:
    """This process's registry if something built it, without building one."""
    return _process.peek()
