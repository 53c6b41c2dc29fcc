"""Shared state through a Sentinel group (a primary, a replica, three Sentinels on
loopback): clients start disconnected and follow the primary through a failover
(``SENTINEL FAILOVER`` and a SIGKILLed primary); every error in between is a
reconnect, not an outage; breakers fall back and reconverge, a trip made after
the failover reaches every process, and an alarm is set and cleared once."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import redis

from common.alarms.store import AlarmStore
from common.connections.probes import check_redis
from common.guards.breaker import policy as bp
from common.guards.breaker.registry import BreakerRegistry
from common.redis.client import make_redis
from common.redis.keys import RedisKeys
from tests.support.servers import free_port, wait_for

RECONNECT_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class Load:
    """Writes through ``client`` in a thread until stopped; counts each outcome by kind."""

    def __init__(self, client: redis.Redis, key: str):
        self.client, self.key = client, key
        self.outcomes: Counter[str] = Counter()
        self.unexpected: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.incr(self.key)
                self.outcomes["ok"] += 1
            except RECONNECT_ERRORS as error:
                self.outcomes[type(error).__name__] += 1
            except Exception as error:  # anything else would be an outage, not a reconnect
                self.unexpected.append(error)
            self._stop.wait(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_client_of_unreachable_sentinels_is_built_at_once_and_reports_down():
    url = f"redis+sentinel://:s3cret-pw@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/m"
    started = time.monotonic()
    client = make_redis(url, timeout=0.5)
    assert time.monotonic() - started < 0.1  # boot never waits on Redis
    result = check_redis(client)
    assert not result.ok and result.error.startswith("MasterNotFoundError: no primary for")
    assert "2 of 2 Sentinels unreachable" in result.error
    assert "s3cret-pw" not in result.error
    assert time.monotonic() - started < 3  # each Sentinel is asked within the timeout
    client.close()


def test_shared_state_lives_on_the_primary(sentinel_group, namespace):
    client = make_redis(sentinel_group.url(), timeout=1.0)
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
    # Behind the Sentinel client: the keys are on the server the Sentinels call primary.
    with sentinel_group.primary() as primary:
        assert primary.info("replication")["role"] == "master"
        assert [a["id"] for a in AlarmStore(primary, namespace).active()] == ["postgres"]
        assert BreakerRegistry(primary, namespace).store.read_states(["svc"])[0].state == "open"
    client.close()


def test_sentinel_failover_under_load_moves_every_client(sentinel_group, namespace):
    client = make_redis(sentinel_group.url(), timeout=0.5)
    counter = f"{namespace}:counter"
    with Load(client, counter) as load:
        wait_for(lambda: load.outcomes["ok"] > 20, 5, what="writes before the failover")
        old = sentinel_group.primary_port()
        new = sentinel_group.failover()
        # The old primary takes writes until a Sentinel reconfigures it (about 10 s): the
        # client must have left it within its recheck (1 s), not when it is demoted.
        wait_for(
            lambda: client.connection_pool.master_address == ("127.0.0.1", new),
            2,
            what="the client to follow the new primary",
        )
        with sentinel_group.server(old) as demoted, sentinel_group.server(new) as primary:
            assert demoted.info("replication")["role"] == "master"  # not yet demoted
            before, on_new = load.outcomes["ok"], int(primary.get(counter) or 0)
            wait_for(lambda: load.outcomes["ok"] > before + 20, 5, what="writes after")
            counted_on_old = int(demoted.get(counter) or 0)
            time.sleep(0.2)
            assert int(demoted.get(counter) or 0) == counted_on_old  # no more writes there
            after = load.outcomes["ok"]
            # Every write since the client followed is on the new primary (one was in flight).
            assert int(primary.get(counter)) - on_new >= after - before - 1
    assert not load.unexpected, load.unexpected
    client.close()


def test_a_write_on_a_demoted_primary_is_a_reconnect(sentinel_group, namespace):
    client = make_redis(sentinel_group.url(), timeout=0.5)
    old = sentinel_group.primary_port()
    client.set(f"{namespace}:k", "before")
    new = sentinel_group.failover()
    with sentinel_group.server(old) as demoted:
        wait_for(lambda: demoted.info("replication")["role"] == "slave", 20, what="the old demoted")
    # A connection of the pool still pointed at the old primary (a reconnect that asked a
    # Sentinel just before the switch) answers READONLY: redis-py makes it a ConnectionError.
    connection = client.connection_pool.get_connection()
    connection.disconnect()
    connection.connect_to(("127.0.0.1", old))
    connection.send_command("SET", f"{namespace}:k", "stale")
    with pytest.raises(redis.ConnectionError, match="previous master is now a slave"):
        connection.read_response()
    client.connection_pool.release(connection)
    assert client.set(f"{namespace}:k", "after")
    assert client.connection_pool.master_address == ("127.0.0.1", new)
    client.close()


def test_breakers_and_alarms_across_a_killed_primary(sentinel_group, namespace):
    policy = bp.BreakerPolicy(failure_threshold=3, failure_rate=0, open_seconds=30)
    clients = [make_redis(sentinel_group.url(), timeout=0.5) for _ in range(3)]
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
    try:
        tripper, watcher = tripping.breaker("svc"), watching.breaker("svc")
        wait_for(lambda: transitions["set"] == 1, 5, what="the alarm to be set")
        for _ in range(20):  # successes while the primary dies: nothing trips
            tripper.record(False)
            watcher.record(False)
        sentinel_group.kill_primary()
        wait_for(lambda: True in fallbacks, 5, what="the breakers to fall back")
        wait_for(lambda: fallbacks[-1] is False and not watching.fallback, 10, what="shared again")
        assert tripper.state == watcher.state == "closed"
        for _ in range(3):
            tripper.record(True)
        wait_for(lambda: not watcher.admit().allowed, 5, what="the trip to reach the other process")
        check_ok.set()
        wait_for(lambda: transitions["clear"] == 1, 10, what="the alarm to clear")
        time.sleep(0.3)  # more passing checks: the cleared alarm stays cleared
    finally:
        stop.set()
        thread.join(5)
        tripping.close()
        watching.close()
    assert transitions == Counter(set=1, clear=1)  # one notification each, no flap
    assert not alarms.is_open("svc-down")
    for client in clients:
        client.close()


def test_a_namespace_is_its_own_on_the_sentinel_group(sentinel_group):
    # The same keys as on one server: two namespaces never see each other's alarms.
    client = make_redis(sentinel_group.url(db=1), timeout=1.0)
    first, second = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    AlarmStore(client, first).set("x", "x")
    assert AlarmStore(client, second).active() == []
    with sentinel_group.primary() as primary:  # db 1 from the URL, not 0
        assert primary.keys(RedisKeys(first).pattern()) == []
        primary.select(1)
        assert primary.keys(RedisKeys(first).pattern()) != []
    client.close()
