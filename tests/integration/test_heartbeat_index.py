"""The workers' heartbeats are found through their index (``{ns}:workers``), not a
``SCAN`` of the whole Redis database: a read is the same few commands however many keys
Redis holds; a worker that stops leaves it, one that died is not listed once its
heartbeat expired and leaves the index after INDEX_GRACE_SECONDS. Real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from common.health.heartbeat import (
    INDEX_GRACE_SECONDS,
    publish_heartbeat,
    read_heartbeats,
    retire_heartbeat,
)
from common.redis.keys import RedisKeys
from tests.support.servers import RedisServer, wait_for

pytestmark = pytest.mark.slow


def commands(client) -> int:
    return sum(
        stats["calls"]
        for name, stats in client.info("commandstats").items()
        if name != "cmdstat_info"
    )


def test_heartbeats_are_read_through_the_index(redis_client, namespace):
    keys = RedisKeys(namespace)
    publish_heartbeat(redis_client, namespace, "w2", {"hostname": "w2"}, ttl=30)
    publish_heartbeat(redis_client, namespace, "w1", {"hostname": "w1"}, ttl=30)
    publish_heartbeat(redis_client, namespace, "gone", {"hostname": "gone"}, ttl=30)
    assert [w["hostname"] for w in read_heartbeats(redis_client, namespace)] == [
        "gone",
        "w1",
        "w2",
    ]
    retire_heartbeat(redis_client, namespace, "gone")
    # A worker that died: its key expired, its name stays until the grace is over.
    redis_client.delete(keys.worker_heartbeat("w2"))
    assert [w["hostname"] for w in read_heartbeats(redis_client, namespace)] == ["w1"]
    assert redis_client.zscore(keys.workers(), "w2") is not None
    redis_client.zadd(keys.workers(), {"w2": time.time() - INDEX_GRACE_SECONDS - 1})
    read_heartbeats(redis_client, namespace)
    assert redis_client.zrange(keys.workers(), 0, -1) == ["w1"]


def test_a_read_costs_the_same_with_many_other_keys():
    """On a throwaway redis-server, so that only this test's commands are counted."""
    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        wait_for(lambda: client.ping(), 10, what="the throwaway redis-server")
        publish_heartbeat(client, "tidx", "w1", {"hostname": "w1"}, ttl=30)
        before = commands(client)
        read_heartbeats(client, "tidx")
        few = commands(client) - before
        with client.pipeline(transaction=False) as pipe:
            for n in range(5000):
                pipe.set(f"other:{n}", "x")
            pipe.execute()
        before = commands(client)
        assert [w["hostname"] for w in read_heartbeats(client, "tidx")] == ["w1"]
        assert commands(client) - before == few == 3  # ZREMRANGEBYSCORE, ZRANGE, MGET
        client.close()
    finally:
        server.close()
