"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A receiver verifies a delivery by recomputing ``HMAC-SHA256(key, f"{id}.{timestamp}.{body}")``
with the base64-decoded part of the endpoint's ``whsec_...`` secret, and
comparing it with the ``webhook-signature`` header (``v1,<base64>``). The
``webhook-id`` stays the same across retries so receivers can drop duplicates;
the timestamp is that of each attempt so receivers can refuse replays.

During a rotation's grace an endpoint has two secrets, and every delivery carries
both signatures, space-separated (``v1,<new> v1,<old>``), as the Standard Webhooks
spec and Svix do: a receiver that verifies with either secret accepts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

__all__ = [
    "SECRET_BYTES",
    "SECRET_PREFIX",
    "checked_secret",
    "generate_secret",
    "sign",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits, as Svix generates them
# A secret the sender brings: whsec_ + base64 of this many bytes (Svix's bounds).
SECRET_BYTES_RANGE = range(24, 65)


def generate_secret() -> str:
    """A new endpoint signing secret, ``whsec_`` + base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def checked_secret(secret: str) -> str:
    """``secret`` if it is ``whsec_`` + base64 of 24 to 64 bytes, else ValueError saying
    what is wrong (never quoting it)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"a secret is {SECRET_PREFIX!r} followed by base64") from None
    if len(key) not in SECRET_BYTES_RANGE:
        raise ValueError(
            f"a secret holds {SECRET_BYTES_RANGE.start} to {SECRET_BYTES_RANGE.stop - 1} bytes;"
            f" this one holds {len(key)}"
        )
    return secret


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    secret: str,
    message_id: str,
    timestamp: int,
    body: bytes,
    previous_secret: str | None = None,
) -> dict[str, str]:
    """The three Standard Webhooks headers of one delivery attempt, signed with
    ``secret`` and, during a rotation's grace, with ``previous_secret`` too."""
    signatures = [sign(secret, message_id, timestamp, body)]
    if previous_secret is not None:
        signatures.append(sign(previous_secret, message_id, timestamp, body))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
