"""A local HTTP server that behaves like a Slack incoming webhook (or any JSON
webhook receiver), for notifier tests.

By default it answers 200 ``ok``. ``script`` queues responses to give first,
e.g. ``[(429, {"Retry-After": "1"}, "rate_limited"), (500, {}, "oops")]``;
``delay`` makes every answer slow. ``messages`` holds the JSON bodies it
accepted (answered 2xx); ``requests`` holds every body received.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSlack:
    def __init__(self, script: list[tuple[int, dict, str]] | None = None, delay: float = 0.0):
        self.script = list(script or [])
        self.delay = delay
        self.messages: list[dict] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXXSECRET"

    def _respond(self, body: bytes) -> tuple[int, dict, str]:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with self.lock:
            self.requests.append(payload)
            if not isinstance(payload, dict) or not payload.get("text") and "alarm" not in payload:
                return 400, {}, "invalid_payload"
            status, headers, text = self.script.pop(0) if self.script else (200, {}, "ok")
            if 200 <= status < 300:
                self.messages.append(payload)
            return status, headers, text

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if fake.delay:
                    time.sleep(fake.delay)
                status, headers, text = fake._respond(body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def texts(self) -> list[str]:
        with self.lock:
            return [m.get("text", "") for m in self.messages]

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
