"""Process-wide state, in explicit objects with one reset.

``PerProcess``: one instance of something per process, built on first use.

Registries and recorders that own threads or sockets (the breaker registry,
the fleet metrics recorder, per-service limit handles) must not be shared
across a fork: the child inherits the object but not its threads, and the
sockets would be shared with the parent. A prefork worker forks its pool
children after start-up, so such an object is built lazily, in the process
that uses it, and built again when the process id changes::

    _registry = PerProcess(build_registry)
    _registry.get()        # built here on first use, again after a fork
    _registry.set(other)   # install one (tests, embedders); set(None) forgets it

``ProcessSlot``: a value the process holds (its settings, a hook installed by
a worker step), kept across a fork. Every ``PerProcess`` and ``ProcessSlot``
is registered, and :func:`reset_all` forgets them all at once: one autouse
test fixture calls it, so no test inherits another's state.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_everything: weakref.WeakSet = weakref.WeakSet()


def reset_all() -> None:
    """Forget every ``PerProcess`` instance and ``ProcessSlot`` value of this
    process (nothing is closed: tests and embedders start clean)."""
    for holder in list(_everything):
        holder.reset()


class PerProcess(Generic[T]):
    """This process's instance of ``factory()``, built under a lock on first use."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._lock = threading.Lock()
        self._current: tuple[int, T] | None = None
        # A fork while another thread held the lock would leave it held forever in the child.
        os.register_at_fork(after_in_child=self._after_fork)
        _everything.add(self)

    def get(self) -> T:
        """The instance of this process; the lock is taken only to build it."""
        current = self._current
        if current is not None and current[0] == os.getpid():
            return current[1]
        with self._lock:
            if self._current is None or self._current[0] != os.getpid():
                self._current = (os.getpid(), self._factory())
            return self._current[1]

    def peek(self) -> T | None:
        """The instance of this process if it was built, without building it."""
        current = self._current
        return current[1] if current is not None and current[0] == os.getpid() else None

    def set(self, value: T | None) -> None:
        """Install ``value`` as this process's instance; ``None`` forgets it (the next ``get``
        builds one)."""
        with self._lock:
            self._current = None if value is None else (os.getpid(), value)

    def reset(self) -> None:
        """Forget this process's instance (it is not closed: that is the owner's job)."""
        self.set(None)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._current = None


class ProcessSlot(Generic[T]):
    """One value of this process, ``default`` until set; inherited by forked children."""

    def __init__(self, default: T):
        self._default = default
        self._value = default
        _everything.add(self)

    def get(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        self._value = value

    def reset(self) -> None:
        self._value = self._default
