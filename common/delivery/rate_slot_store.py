"""The Redis side of promised rates: :class:`RateSlotStore` runs ``rate_slots.lua``
(one delivery's reservation of its endpoint's next send slot: the rule of
``rate_slots.py``, applied atomically, so every worker shares the endpoint's slots)
and decodes its reply into a :class:`~common.delivery.rate_slots.Slot` at the edge.
The key comes from :meth:`~common.redis.keys.RedisKeys.delivery_rate`.

One clock: the script runs on Redis's (``TIME``); ``caller_clock=True`` runs it on
the caller's ``now`` instead (tests that control time)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from common.access.ratelimit import Bucket, RateOptions
from common.access.ratelimit_store import read_bucket
from common.delivery.rate_slots import Slot, slot_ttl_ms
from common.redis.keys import RedisKeys
from common.redis.scripts import read_lua

__all__ = ["IDLE_MARGIN_MS", "RateSlotStore", "decode"]

# rate_slots.py's rule, applied atomically; KEYS, ARGV and the reply are in the file.
_RESERVE_LUA = read_lua("common.delivery", "rate_slots.lua")

# A bucket's key outlives the time its deepest debt takes to fill by this much.
IDLE_MARGIN_MS = 60_000


def decode(reply: Sequence[Any]) -> Slot:
    """A :class:`Slot` from ``rate_slots.lua``'s reply."""
    granted, wait_us, tokens, at, _now = (int(value) for value in reply)
    return Slot(granted == 1, wait_us, Bucket(tokens, at))


class RateSlotStore:
    """The endpoints' send slots of one namespace in Redis: one Lua call per reservation."""

    def __init__(self, client: redis.Redis, namespace: str, *, caller_clock: bool = False):
        self.client = client
        self.keys = RedisKeys(namespace)
        self.caller_clock = caller_clock
        self._script = client.register_script(_RESERVE_LUA)

    def reserve(
        self, endpoint_id: str, options: RateOptions, horizon_us: int, now_us: int | None = None
    ) -> Slot:
        """Reserve ``endpoint_id``'s next slot. ``now_us`` is used only with
        ``caller_clock``. Raises Redis's errors: the caller decides what then."""
        now = str(now_us) if self.caller_clock and now_us is not None else ""
        reply = self._script(
            keys=[self.keys.delivery_rate(endpoint_id)],
            args=[
                now,
                options.per_second,
                options.burst,
                horizon_us,
                slot_ttl_ms(options, horizon_us, IDLE_MARGIN_MS),
            ],
        )
        return decode(reply)

    def read(self, endpoint_id: str) -> Bucket | None:
        """``endpoint_id``'s bucket as last written (None: full, never used or expired)."""
        return read_bucket(self.client, self.keys.delivery_rate(endpoint_id))
