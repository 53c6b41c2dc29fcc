"""A local HTTP service with a hard capacity, for benchmarks: it serves at most
``capacity`` requests at a time, each taking ``service_time`` seconds, and
answers 503 at once to any request past that — the way an overloaded webhook
receiver behind a load shedder behaves."""

from __future__ import annotations

import threading
import time

from tests.support.http_server import FakeHTTPServer, Reply, Request


class OverloadService(FakeHTTPServer):
    """``with OverloadService(8, 0.02) as service: ... service.url ...``"""

    def __init__(self, capacity: int, service_time: float):
        super().__init__()
        self.capacity = capacity
        self.service_time = service_time
        self.slots = threading.BoundedSemaphore(capacity)
        self.served = 0
        self.rejected = 0

    def answer(self, request: Request) -> Reply:
        if not self.slots.acquire(blocking=False):
            with self.lock:
                self.rejected += 1
            return Reply(503, body="overloaded")
        try:
            time.sleep(self.service_time)
        finally:
            # Free the slot before answering, so a client that saw the answer
            # never races the slot it just used.
            self.slots.release()
        with self.lock:
            self.served += 1
        return Reply(200, body="ok")
