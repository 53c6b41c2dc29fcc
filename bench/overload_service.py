"""A local HTTP service with a hard capacity, for benchmarks: it serves at most
``capacity`` requests at a time, each taking ``service_time`` seconds, and
answers 503 at once to any request past that — the way an overloaded webhook
receiver behind a load shedder behaves."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OverloadService:
    """``with OverloadService(8, 0.02) as service: ... service.url ...``"""

    def __init__(self, capacity: int, service_time: float, host: str = "127.0.0.1"):
        self.capacity = capacity
        self.service_time = service_time
        self.slots = threading.BoundedSemaphore(capacity)
        self.served = 0
        self.rejected = 0
        counts_lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: measure the service, not TCP set-up
            # Headers and body go out in two writes; with Nagle on, the body
            # waits for the client's delayed ACK (~40 ms) and skews every figure.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if service.slots.acquire(blocking=False):
                    try:
                        time.sleep(service.service_time)
                    finally:
                        # Free the slot before answering, so a client that saw
                        # the answer never races the slot it just used.
                        service.slots.release()
                    with counts_lock:
                        service.served += 1
                    self._answer(200, b"ok")
                else:
                    with counts_lock:
                        service.rejected += 1
                    self._answer(503, b"overloaded")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> OverloadService:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
