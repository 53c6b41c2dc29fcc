"""Shared state on a Redis Cluster (three primaries, one replica each, on loopback),
with ``REDIS_URL=redis+cluster://...``: every multi-key Lua script (alarms, breakers,
AIMD limits, the beat lease, rate limits) and the heartbeats work because every key
of the namespace is in the ``{namespace}`` hash slot, on one primary; across a
handover (``CLUSTER FAILOVER``) and a SIGKILLed primary under load, an alarm that
was replicated is not lost, no alarm flaps, and breakers are shared again within
a bounded time; the password never shows in the monitor's log line or /health."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter

import pytest
import redis

from api.health import health_document
from common.access.ratelimit import RateOptions
from common.access.ratelimit_store import RateLimitStore
from common.alarms.store import AlarmStore
from common.config import load_settings
from common.connections.dependency import Dependencies
from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.guards.limit.aimd import AIMDOptions
from common.guards.limit.shared import SharedLimit
from common.health.beat_store import BeatStore
from common.health.heartbeat import publish_heartbeat, read_heartbeats
from common.redis.client import redis_for, wait_for_replica
from common.support.logs import JsonFormatter
from tests.support.cluster import TEST_PASSWORD
from tests.support.servers import wait_for

RECONNECT_ERRORS = (redis.ConnectionError, redis.TimeoutError)
PASSWORD = TEST_PASSWORD
# A killed primary is replaced after cluster-node-timeout (1 s) plus an election; the
# breakers' refresh (0.5 s) and reconnect backoff add a few seconds at most.
RECONVERGE_SECONDS = 10


@pytest.fixture
def cluster(redis_cluster):
    return redis_cluster


@pytest.fixture
def cluster_settings(cluster, settings_env):
    namespace = f"cl{uuid.uuid4().hex[:8]}"
    env = {
        **settings_env,
        "REDIS_URL": cluster.url(nodes=3),
        "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        "JENGA_NAMESPACE": namespace,
    }
    return load_settings(env, wait_seconds=0)


def test_every_shared_state_script_works_on_the_namespace_primary(cluster, cluster_settings):
    namespace = cluster_settings.jenga_namespace
    client = redis_for(cluster_settings)
    alarms = AlarmStore(client, namespace, clear_after=1)
    assert alarms.set("postgres", "PostgreSQL unreachable").kind == "set"
    registry = BreakerRegistry(
        client, namespace, bp.BreakerPolicy(failure_threshold=2, failure_rate=0, open_seconds=30)
    )
    breaker = registry.breaker("svc")
    breaker.record(True)
    breaker.record(True)
    registry.flush()
    assert breaker.state == "open"
    limit = SharedLimit(client, namespace, "svc", AIMDOptions(initial=2, min=1, max=4))
    leases = [limit.try_acquire() for _ in range(3)]
    assert [lease is not None for lease in leases] == [True, True, False]
    for lease in leases[:2]:
        lease.release(False, 0.01)
    beats = BeatStore(client, namespace)
    assert beats.claim("beat-a", 0, ttl=10).granted
    assert not beats.claim("beat-b", 0, ttl=10).granted  # one beat schedules
    rates = RateLimitStore(client, namespace)
    decisions = [rates.take("key-1", RateOptions(per_second=1, burst=2)) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    publish_heartbeat(client, namespace, "w1", {"hostname": "w1"}, ttl=30)
    assert [w["hostname"] for w in read_heartbeats(client, namespace)] == ["w1"]
    limit.close()
    registry.close()
    # Every key is on the primary of the {namespace} slot, none elsewhere.
    owner = cluster.owner_of("{" + namespace + "}")
    with cluster.node(owner) as node:
        keys = list(node.scan_iter(match="{" + namespace + "}:*"))
        assert len(keys) >= 8, keys
        assert BreakerRegistry(node, namespace).store.read_states(["svc"])[0].state == "open"
        assert [a["id"] for a in AlarmStore(node, namespace).active()] == ["postgres"]
    for port in set(cluster.up()) - {owner}:
        with cluster.node(port) as other:
            if other.info("replication")["role"] == "master":
                assert list(other.scan_iter(match=f"*{namespace}*")) == []
    client.close()


@pytest.mark.parametrize("fault", ["failover", "kill_primary"])
def test_alarms_and_breakers_across_a_primary_fault_under_load(cluster, cluster_settings, fault):
    namespace = cluster_settings.jenga_namespace
    tag = "{" + namespace + "}"
    policy = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=30)
    clients = [redis_for(cluster_settings) for _ in range(3)]
    fallbacks: list[bool] = []
    tripping = BreakerRegistry(
        clients[0],
        namespace,
        policy,
        refresh_seconds=0.5,
        on_fallback=lambda on, error: fallbacks.append(on),
    ).start()
    watching = BreakerRegistry(clients[1], namespace, policy, refresh_seconds=0.5).start()
    alarms = AlarmStore(clients[2], namespace, clear_after=3)
    durable = AlarmStore(clients[2], namespace)
    durable.set("disk", "disk almost full")  # set once, before the fault, and replicated
    wait_for_replica(clients[2])
    transitions: Counter[str] = Counter()
    check_ok = threading.Event()
    stop = threading.Event()

    def watchdog() -> None:  # as beat's watchdog: one check every 20 ms, whatever happens
        while not stop.is_set():
            try:
                change = alarms.record_check("svc-down", check_ok.is_set(), "svc is down")
                if change is not None:
                    transitions[change.kind] += 1
            except RECONNECT_ERRORS:
                pass
            stop.wait(0.02)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    old = cluster.owner_of(tag)
    try:
        tripper, watcher = tripping.breaker("svc"), watching.breaker("svc")
        wait_for(lambda: transitions["set"] == 1, 5, what="the alarm to be set")
        for _ in range(20):  # successes while the primary changes: nothing trips
            tripper.record(False)
            watcher.record(False)
        faulted = time.monotonic()
        getattr(cluster, fault)(tag)
        if fault == "kill_primary":
            wait_for(lambda: True in fallbacks, 5, what="the breakers to fall back")

        def shared_again() -> bool:
            return (not fallbacks or fallbacks[-1] is False) and not watching.fallback

        wait_for(shared_again, RECONVERGE_SECONDS, what="breakers shared again")
        for _ in range(3):
            tripper.record(True)
        wait_for(
            lambda: not watcher.admit().allowed,
            RECONVERGE_SECONDS,
            what="the trip to reach the other process",
        )
        assert time.monotonic() - faulted < 2 * RECONVERGE_SECONDS
        assert tripper.state == "open"
        # The replicated alarm survived. This client's slot map may still name the dead
        # primary for one command (redis-py re-reads the map after a refused
        # connection, and no hidden retry runs it again), so the read is polled.
        wait_for(
            lambda: "disk" in [a["id"] for a in durable.active()],
            RECONVERGE_SECONDS,
            what="the replicated alarm to be read back",
        )
        check_ok.set()
        wait_for(lambda: transitions["clear"] == 1, 10, what="the alarm to clear")
        time.sleep(0.3)  # more passing checks: the cleared alarm stays cleared
    finally:
        stop.set()
        thread.join(5)
        tripping.close()
        watching.close()
        for client in clients:
            client.close()
        if old not in cluster.up():
            cluster.restart(old)
    assert transitions == Counter(set=1, clear=1)  # one notification each, no flap


def test_the_cluster_password_is_masked_in_logs_and_health(cluster, cluster_settings, caplog):
    assert PASSWORD in cluster_settings.redis_url
    client = redis_for(cluster_settings)
    monitors = Dependencies.from_settings(cluster_settings, redis=client, names=("redis",))
    with caplog.at_level(logging.INFO, logger="jenga.dependency"):
        monitors["redis"].step()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "dependency.state"]
    assert record.state == "up"
    assert record.target.startswith("redis+cluster://127.0.0.1:")
    assert record.target.endswith("?password=***")
    assert PASSWORD not in JsonFormatter().format(record)
    assert health_document(monitors.snapshot())["status"] == "pass"
    # Wrong password: the monitor reports down, and neither password shows.
    wrong = cluster_settings.redis_url.replace(PASSWORD, "wrong-pw-123")
    bad = load_settings(
        {
            "DATABASE_URL": cluster_settings.database_url,
            "REDIS_URL": wrong,
            "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
            "JENGA_NAMESPACE": cluster_settings.jenga_namespace,
        },
        wait_seconds=0,
    )
    bad_client = redis_for(bad)
    failing = Dependencies.from_settings(bad, redis=bad_client, names=("redis",))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jenga.dependency"):
        failing["redis"].step()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "dependency.state"]
    assert record.state == "down"
    document = json.dumps(health_document(failing.snapshot()))
    line = JsonFormatter().format(record)
    for text in (document, line):
        assert "wrong-pw-123" not in text and PASSWORD not in text
    assert '"status": "fail"' in document
    client.close()
    bad_client.close()
