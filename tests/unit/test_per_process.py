"""``PerProcess``: one instance per process, built once, built again after a fork."""

from __future__ import annotations

import os
import signal
import threading

from common.support.per_process import PerProcess


def test_built_once_then_again_in_a_forked_child():
    built: list[int] = []

    def factory() -> object:
        built.append(os.getpid())
        return object()

    holder = PerProcess(factory)
    assert holder.peek() is None
    first = holder.get()
    assert holder.get() is first and holder.peek() is first and built == [os.getpid()]

    holder._lock.acquire()  # another thread holds the lock at the moment of the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must not see the parent's instance, nor deadlock on its lock
        signal.alarm(5)  # a deadlock ends the child, and the test fails instead of hanging
        try:
            ok = holder.peek() is None and holder.get() is not first and built[-1] == os.getpid()
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    holder._lock.release()
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1" and status == 0
    os.close(read)
    assert holder.get() is first  # the parent keeps its own


def test_set_and_reset():
    holder = PerProcess(lambda: "built")
    holder.set("installed")
    assert holder.get() == "installed"
    holder.reset()
    assert holder.peek() is None and holder.get() == "built"


def test_threads_racing_build_one_instance():
    gate = threading.Barrier(8)
    holder = PerProcess(object)
    seen = []

    def use():
        gate.wait()
        seen.append(holder.get())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(x) for x in seen}) == 1
