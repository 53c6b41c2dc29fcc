"""The shared-state client of a Redis Cluster (three primaries, one replica each, on
loopback): built without touching the network, an unreachable cluster is a
``redis.ConnectionError``, scripts (alone and pipelined), ``TIME``, ``SCAN`` and ``WAIT``
reach the primary of the namespace's hash slot, and a handover and a killed primary
cost at most one failed call."""

from __future__ import annotations

import time

import pytest
import redis

from common.connections.probes import check_redis
from common.redis.client import make_redis, wait_for_replica
from tests.support.servers import free_port


@pytest.fixture
def cluster(redis_cluster):
    return redis_cluster


def test_an_unreachable_cluster_is_a_connection_error_at_the_first_command():
    started = time.monotonic()
    client = make_redis(f"redis+cluster://127.0.0.1:{free_port()}?password=s3cret", 0.5, "ns")
    assert time.monotonic() - started < 0.1  # boot never waits on Redis
    result = check_redis(client)
    assert not result.ok and result.error.startswith("ConnectionError: Redis Cluster unavailable")
    assert "s3cret" not in result.error
    with pytest.raises(redis.ConnectionError):
        client.incr("{ns}:x")


def test_keyless_commands_and_scripts_reach_the_namespace_primary(cluster):
    tag = "{cl1}"
    client = make_redis(cluster.url(), 1.0, "cl1")
    assert client.ping()
    owner = cluster.owner_of(tag)
    assert client.get_default_node().port == owner
    client.set(f"{tag}:a", "1")
    client.set(f"{tag}:b", "2")
    script = client.register_script("return redis.call('get', KEYS[1])")
    assert script(keys=[f"{tag}:a"]) == "1"
    pipe = client.pipeline(transaction=False)
    pipe.time()
    script(keys=[f"{tag}:b"], client=pipe)
    clock, value = pipe.execute()
    assert value == "2" and abs(clock[0] - time.time()) < 5
    assert sorted(client.scan_iter(match=f"{tag}:*")) == [f"{tag}:a", f"{tag}:b"]
    wait_for_replica(client)
    with cluster.node(owner) as node:
        assert node.get(f"{tag}:a") == "1"  # on that primary itself, not through redirects


def test_a_handover_and_a_killed_primary_cost_at_most_one_failed_call(cluster):
    tag = "{cl2}"
    client = make_redis(cluster.url(), 1.0, "cl2")
    script = client.register_script("return redis.call('incr', KEYS[1])")
    assert script(keys=[f"{tag}:n"]) == 1
    cluster.failover(tag)
    assert script(keys=[f"{tag}:n"]) == 2  # MOVED is followed; the script is loaded again
    old = cluster.owner_of(tag)
    cluster.kill_primary(tag)
    failures = 0
    for _ in range(3):
        try:
            pipe = client.pipeline(transaction=False)
            script(keys=[f"{tag}:n"], client=pipe)
            pipe.execute()
        except redis.ConnectionError:
            failures += 1
    assert failures <= 1
    assert check_redis(client).ok
    assert int(client.get(f"{tag}:n")) >= 3
    cluster.restart(old)
