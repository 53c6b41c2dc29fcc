"""A local webhook receiver for tests and benchmarks: a ``FakeHTTPServer`` (see
``http_server.py``) that verifies every request's Standard Webhooks signature with the
``standardwebhooks`` package (someone else's code, not ours) and records what
it saw, per ``webhook-id``.

    with WebhookReceiver() as receiver:
        receiver.add_secret(created["secret"])
        receiver.respond = lambda seen: 500 if seen.count % 2 else 200
        ... receiver.url ...; receiver.accepted_ids()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.http_server import FakeHTTPServer, Reply, Request


@dataclass
class Received(Request):
    verified: bool = False  # the signature checked out with one of the secrets added

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def timestamp(self) -> str:
        return self.headers.get("webhook-timestamp", "")

    @property
    def body(self) -> dict | None:
        return self.json()


class WebhookReceiver(FakeHTTPServer):
    url_path = "/hook"

    def __init__(self, host: str = "127.0.0.1"):
        super().__init__(host=host)
        self.secrets: list[str] = []
        # Decides each answer from the request; the default accepts everything.
        self.respond: Callable[[Received], int | Reply] = lambda received: 200

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

    def received(self, request: Request) -> Received:
        return Received(**vars(request), verified=self._verify(request.raw, request.headers))

    def answer(self, request: Received) -> Reply:
        reply = self.respond(request)
        return Reply(reply) if isinstance(reply, int) else reply

    # --- what was seen -------------------------------------------------------
    def by_id(self) -> dict[str, list[Received]]:
        seen: dict[str, list[Received]] = defaultdict(list)
        with self.lock:
            for received in self.requests:
                seen[received.webhook_id].append(received)
        return seen

    def accepted_ids(self) -> set[str]:
        """webhook-ids answered with a 2xx at least once."""
        with self.lock:
            return {r.webhook_id for r in self.requests if 200 <= r.status < 300}
