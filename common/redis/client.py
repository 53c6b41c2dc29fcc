"""Redis clients with bounded timeouts. redis-py connects lazily, so creating a
client never touches the network: boot never waits on Redis.

A ``redis+sentinel://`` URL (:mod:`common.redis.urls`) gives a client of the
group's current primary (redis-py's ``Sentinel.master_for``): every new
connection asks the Sentinels where the primary is, so after a failover the
client follows it. A connection still open to a demoted primary answers writes
with ``READONLY``; redis-py turns that into a ``ConnectionError`` and drops the
connection, so callers see one failed call (the same as a lost server: breakers
fall back, tasks retry) and the next call reaches the new primary.

A ``redis+cluster://`` URL gives a :class:`~common.redis.cluster.SharedStateCluster`
(shared state only; every key of a namespace is in one hash slot).

Open connections are the catch: after ``SENTINEL FAILOVER`` (or a partition)
the old primary stays a writable primary until a Sentinel reconfigures it, about
10 s later, and redis-py would keep writing there, into data the resync then
throws away. :class:`FollowingSentinelPool` asks the Sentinels again at most every
``SENTINEL_RECHECK_SECONDS`` when a connection is taken, and drops the
connections to an address that is no longer the primary's.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from common.config import Settings
from common.redis.cluster import SharedStateCluster
from common.redis.urls import (
    SentinelURL,
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
)

__all__ = [
    "FollowingSentinelPool",
    "SentinelGroupClient",
    "SentinelPrimaryRedis",
    "make_redis",
    "redis_for",
    "sentinel_client_options",
    "wait_for_replica",
]

SENTINEL_RECHECK_SECONDS = 1.0
REPLICA_WAIT_SECONDS = 0.5


def make_redis(url: str, timeout: float, namespace: str | None = None) -> redis.Redis:
    """A client whose every connect and command gives up after ``timeout`` seconds.
    ``namespace``: on a Redis Cluster, keyless commands (the health check, ``TIME``,
    ``SCAN``) go to the primary of that namespace's slot; elsewhere it changes nothing."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 15,
        "decode_responses": True,
        # Retries belong to the callers (backoff with jitter, breakers); a hidden
        # retry here would multiply the time a dead server costs.
        "retry_on_timeout": False,
    }
    if is_sentinel_url(url):
        return _primary_of(parse_sentinel_url(url), timeout, options)
    if is_cluster_url(url):
        return SharedStateCluster(parse_cluster_url(url), namespace, options)  # type: ignore[return-value]
    return redis.Redis.from_url(url, **options)


def redis_for(settings: Settings) -> redis.Redis:
    """The Redis client of a process, with the check timeout as its bound."""
    return make_redis(settings.redis_url, settings.check_timeout_seconds, settings.jenga_namespace)


def wait_for_replica(client: redis.Redis, timeout: float = REPLICA_WAIT_SECONDS) -> None:
    """On a Sentinel group or a Redis Cluster, wait (at most ``timeout`` s) until a
    replica has every write this client made (``WAIT 1``); on one server, nothing. Replication is
    asynchronous: a write that people were told about (an alarm set) must not
    vanish with a primary killed a millisecond later, to be told again."""
    if isinstance(client, SentinelPrimaryRedis | SharedStateCluster):
        # The write is made: a failed wait must not keep its caller from telling people.
        with contextlib.suppress(redis.RedisError):
            client.execute_command("WAIT", 1, int(timeout * 1000))


def sentinel_client_options(timeout: float) -> dict[str, Any]:
    """Options of a client of one Sentinel: bounded, and without redis-py's default of
    three retries with backoff (about 4 s per dead Sentinel before the next is asked)."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }


class SentinelPrimaryRedis(redis.Redis):
    """The client of a Sentinel group's primary; :meth:`close` also closes the
    connections to the Sentinels (a probe builds one per check)."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            for node in self.connection_pool.sentinel_manager.sentinels:
                node.close()


class SentinelGroupClient(Sentinel):
    """redis-py's Sentinel manager with an operator's error: redis-py's message quotes
    the repr of every Sentinel client that did not answer, hundreds of characters that
    /health and the logs cut to a useless prefix."""

    def discover_master(self, service_name):
        try:
            return super().discover_master(service_name)
        except MasterNotFoundError as error:
            asked = len(self.sentinels)
            unreachable = str(error).count("<redis.client.Redis")
            raise MasterNotFoundError(
                f"no primary for {service_name!r} ({unreachable} of {asked} Sentinels"
                " unreachable; the others name no primary that is up)"
            ) from None


class FollowingSentinelPool(SentinelConnectionPool):
    """redis-py's Sentinel pool that also re-asks where the primary is every
    ``recheck_seconds`` (when a connection is taken), not only on a new connection.
    A Sentinel that does not answer is no reason to stop using a primary that does."""

    def __init__(self, service_name, sentinel_manager, **kwargs):
        self.recheck_seconds = kwargs.pop("recheck_seconds", SENTINEL_RECHECK_SECONDS)
        self._next_recheck = 0.0
        super().__init__(service_name, sentinel_manager, **kwargs)

    def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if now >= self._next_recheck:
            self._next_recheck = now + self.recheck_seconds
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.get_master_address()  # drops idle connections if the primary moved
        return super().get_connection(*args, **kwargs)


def _primary_of(target: SentinelURL, timeout: float, options: dict[str, Any]) -> redis.Redis:
    # Asking a Sentinel is bounded like any command: a dead one is skipped for the next.
    sentinel_options = sentinel_client_options(timeout)
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = SentinelGroupClient(list(target.sentinels), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(
        target.master_name,
        redis_class=SentinelPrimaryRedis,
        connection_pool_class=FollowingSentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
