"""A local HTTP server that behaves like a Slack incoming webhook (or any JSON
webhook receiver), for notifier tests.

By default it answers 200 ``ok``. ``script`` queues responses to give first,
e.g. ``[(429, {"Retry-After": "1"}, "rate_limited"), (500, {}, "oops")]``;
``delay`` makes every answer slow. ``messages`` holds the JSON bodies it
accepted (answered 2xx); ``requests`` holds every request received.
"""

from __future__ import annotations

import time

from tests.support.http_server import FakeHTTPServer, Reply, Request


class FakeSlack(FakeHTTPServer):
    url_path = "/services/T000/B000/XXXXSECRET"

    def __init__(self, script: list[tuple[int, dict, str]] | None = None, delay: float = 0.0):
        super().__init__()
        self.script = list(script or [])
        self.delay = delay
        self.messages: list[dict] = []

    def answer(self, request: Request) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        payload = request.json()
        with self.lock:
            if not isinstance(payload, dict) or not payload.get("text") and "alarm" not in payload:
                status, headers, text = 400, {}, "invalid_payload"
            else:
                status, headers, text = self.script.pop(0) if self.script else (200, {}, "ok")
                if 200 <= status < 300:
                    self.messages.append(payload)
        return Reply(status, {"Content-Type": "text/plain", **headers}, text)

    def texts(self) -> list[str]:
        with self.lock:
            return [m.get("text", "") for m in self.messages]
