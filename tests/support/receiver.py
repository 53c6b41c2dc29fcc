"""A local webhook receiver for tests and benchmarks: a real HTTP server in a
thread that verifies every request's Standard Webhooks signature with the
``standardwebhooks`` package (someone else's code, not ours) and records what
it saw, per ``webhook-id``.

    with WebhookReceiver() as receiver:
        receiver.add_secret(created["secret"])
        receiver.respond = lambda seen: 500 if seen.count % 2 else 200
        ... receiver.url ...; receiver.accepted_ids()
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    timestamp: str
    verified: bool
    body: dict | None
    path: str
    status: int = 0  # what the receiver answered
    count: int = 0  # how many requests the receiver had seen before this one


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.secrets: list[str] = []
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        # Decides each answer from the request; the default accepts everything.
        self.respond: Callable[[Received], int | Reply] = lambda received: 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
            # Headers and body go out in two writes; with Nagle on, the body waits
            # for the client's delayed ACK (40 ms a request). Real servers set
            # TCP_NODELAY too.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                receiver._handle(self, raw)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:
                pass  # a client that hangs up (a SIGKILLed worker) is expected here

        self.server = Server((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def add_secret(self, secret: str) -> None:
        self.secrets.append(secret)

    def _verify(self, raw: bytes, headers: dict[str, str]) -> bool:
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(raw, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        received = Received(headers.get("webhook-id", ""), headers.get("webhook-timestamp", ""),
                            self._verify(raw, headers), body, handler.path)
        with self._lock:
            received.count = len(self.requests)
            self.requests.append(received)
        reply = self.respond(received)
        if isinstance(reply, int):
            reply = Reply(reply)
        received.status = reply.status
        payload = reply.body.encode()
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    # --- what was seen -------------------------------------------------------
    def by_id(self) -> dict[str, list[Received]]:
        seen: dict[str, list[Received]] = defaultdict(list)
        with self._lock:
            for received in self.requests:
                seen[received.webhook_id].append(received)
        return seen

    def accepted_ids(self) -> set[str]:
        """webhook-ids answered with a 2xx at least once."""
        with self._lock:
            return {r.webhook_id for r in self.requests if 200 <= r.status < 300}

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
