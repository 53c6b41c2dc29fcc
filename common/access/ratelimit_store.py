"""The Redis side of the per-key request rate limit.

:class:`RateLimitStore` runs ``ratelimit.lua`` (one request against one key's
bucket: the rule of ``ratelimit.py``, applied atomically, so every API process
shares the bucket) and decodes its reply into a
:class:`~common.access.ratelimit.Decision` at the edge. The key comes from
:meth:`~common.redis.keys.RedisKeys.rate_limit`.

One clock: the script runs on Redis's (``TIME``), whatever each API host's says;
``caller_clock=True`` runs it on the caller's ``now`` instead (tests that control
time). A bucket's key expires :func:`key_ttl` after its last request, once it
would be full again: a missing bucket is a full one, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from common.access.ratelimit import Bucket, Decision, RateOptions
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

__all__ = ["IDLE_MARGIN_SECONDS", "RateLimitStore", "key_ttl", "read_bucket"]

# ratelimit.py's rule, applied atomically; KEYS, ARGV and the reply are described in the file.
_TAKE_LUA = read_lua("common.access", "ratelimit.lua")

# A bucket's key outlives the time it takes to fill by this much (s), so a test's clock
# (or a slow request) never sees a bucket vanish while it still holds something.
IDLE_MARGIN_SECONDS = 60


def key_ttl(options: RateOptions) -> int:
    """Milliseconds a bucket's key outlives its last request: the time an empty bucket
    takes to fill, plus :data:`IDLE_MARGIN_SECONDS`."""
    return -(-options.burst * 1000 // options.per_second) + IDLE_MARGIN_SECONDS * 1000


def read_bucket(client: redis.Redis, key: str) -> Bucket | None:
    """The bucket at ``key`` as last written (None: full, never used or expired): the
    request buckets' and the endpoints' send slots' alike."""
    raw = client.hgetall(key)
    if not raw or "tokens" not in raw or "at" not in raw:
        return None
    return Bucket(int(raw["tokens"]), int(raw["at"]))


def decode(reply: Sequence[Any]) -> Decision:
    """A :class:`Decision` from ``ratelimit.lua``'s reply."""
    allowed, tokens, at, retry_us, reset_us = (int(value) for value in reply)
    return Decision(allowed == 1, Bucket(tokens, at), retry_us, reset_us)


class RateLimitStore:
    """The request buckets of one namespace in Redis: one Lua call per request."""

    def __init__(self, client: redis.Redis, namespace: str, *, caller_clock: bool = False):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.caller_clock = caller_clock
        self._script = client.register_script(_TAKE_LUA)

    def take(self, principal: str, options: RateOptions, now_us: int | None = None) -> Decision:
        """One request of ``principal`` (a key's prefix, never the key). ``now_us``
        (microseconds) is used only with ``caller_clock``. Raises Redis's errors: whether
        to let the request through then is the caller's choice."""
        now = str(now_us) if self.caller_clock and now_us is not None else ""
        reply = self._script(
            keys=[self.keys.rate_limit(principal)],
            args=[now, options.per_second, options.burst, key_ttl(options)],
        )
        return decode(reply)

    def read(self, principal: str) -> Bucket | None:
        """``principal``'s bucket as last written (None: full, never used or expired)."""
        return read_bucket(self.client, self.keys.rate_limit(principal))
