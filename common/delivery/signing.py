"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A receiver verifies a delivery by recomputing ``HMAC-SHA256(key, f"{id}.{timestamp}.{body}")``
with the base64-decoded part of the endpoint's ``whsec_...`` secret, and
comparing it with the ``webhook-signature`` header (``v1,<base64>``). The
``webhook-id`` stays the same across retries so receivers can drop duplicates;
the timestamp is that of each attempt so receivers can refuse replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits, as Svix generates them


def generate_secret() -> str:
    """A new endpoint signing secret, ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
