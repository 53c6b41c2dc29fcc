"""SharedLimit against a small model (fuse-style): random sequences of
acquire / release / double release / time passing / sync run on the real thing
(real Redis, Lua) and on a few lines of reference logic built on the pure
:func:`common.guards.limit.aimd.update`; they must agree on every step."""

from __future__ import annotations

import uuid

import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from common.guards.limit.aimd import AIMDOptions, Window, update
from common.guards.limit.shared import SharedLimit
from common.redis.keys import RedisKeys
from tests.support import servers

OPTIONS = AIMDOptions(
    initial=4, min=1, max=8, backoff_ratio=0.5, step=1, latency_target=0.3, window=1.0
)
LATENCIES = [0.0, 0.1, 0.25, 0.5, 1.0]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0  # quarter-second steps stay exact through Lua's number formatting

    def __call__(self) -> float:
        return self.now


class LimitModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(servers.base_redis_url(), decode_responses=True)
        self.namespace = f"m{uuid.uuid4().hex[:10]}"
        self.clock = Clock()
        self.shared = SharedLimit(
            self.client,
            self.namespace,
            "svc",
            OPTIONS,
            self.clock,
            lease_ttl=1000.0,
            background=False,
        )
        self.shared.store.caller_clock = True  # syncs on the model's clock, not Redis's
        self.in_flight: list = []
        self.released: list = []
        # the model
        self.limit = OPTIONS.initial
        self.window_start: float | None = None
        self.pending = [0, 0, 0, 0]  # count, drops, latency_us, peak since last sync
        self.window = [0, 0, 0, 0]  # count, drops, latency_us, peak of the window

    def _model_sync(self) -> None:
        now = self.clock.now
        if self.window_start is None:
            self.window_start = now
        count, drops, latency_us, peak = self.pending
        self.window[0] += count
        self.window[1] += drops
        self.window[2] += latency_us
        self.window[3] = max(self.window[3], peak)
        if now >= self.window_start + OPTIONS.window:
            self.limit = update(
                self.limit, Window.from_counters(*[self.window[i] for i in (0, 1, 3, 2)]), OPTIONS
            )
            self.window = [0, 0, 0, 0]
            self.window_start = now
        self.pending = [0, 0, 0, len(self.in_flight)]

    def _observe(self, action):
        before = self.shared.syncs
        result = action()
        if self.shared.syncs > before:
            self._model_sync()
        return result

    @rule()
    def acquire(self):
        lease = self._observe(self.shared.try_acquire)
        expected = len(self.in_flight) < self.limit  # the limit as of any sync just made
        assert (lease is not None) == expected, (len(self.in_flight), self.limit)
        if lease is not None:
            self.in_flight.append(lease)
            self.pending[3] = max(self.pending[3], len(self.in_flight))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), dropped=st.booleans(), latency=st.sampled_from(LATENCIES))
    def release(self, data, dropped, latency):
        lease = self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        lease.release(dropped, latency)
        self.released.append(lease)
        self.pending[0] += 1
        self.pending[1] += int(dropped)
        self.pending[2] += int(round(latency * 1e6))

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def release_again(self, data):
        data.draw(st.sampled_from(self.released)).release(True, 5.0)  # ignored

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0]))
    def time_passes(self, seconds):
        self.clock.now += seconds

    @rule()
    def sync(self):
        self._observe(self.shared.sync)

    @invariant()
    def limit_agrees(self):
        stored = self.client.hget(RedisKeys(self.namespace).key("limit", "svc"), "limit")
        if stored is not None:
            assert int(stored) == self.limit

    @invariant()
    def held_slots_within_limit(self):
        held = self.client.zcard(RedisKeys(self.namespace).key("limit", "svc", "leases"))
        # Idle slots go back at the next sync; until then the process holds at
        # most what it had in flight since the last one.
        assert held <= max(self.limit, self.pending[3])
        assert self.shared.snapshot()["local"]["busy"] == len(self.in_flight)

    def teardown(self):
        keys = list(self.client.scan_iter(RedisKeys(self.namespace).pattern()))
        if keys:
            self.client.delete(*keys)
        self.client.close()


LimitModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestSharedLimitModel = LimitModel.TestCase
