"""No level: kombu's Redis Sentinel transport, following the primary as
:mod:`common.redis.client` does.

kombu's own ``sentinel://`` transport builds redis-py's Sentinel pool, which asks
the Sentinels only when it opens a connection. After ``SENTINEL FAILOVER`` the
old primary keeps taking writes for about 10 s, until a Sentinel reconfigures it,
and the publishers' open connections keep sending tasks there, into data the
resync throws away: the message waits for ``DELIVERY_REDISPATCH_SECONDS``.
This channel builds :class:`~common.redis.client.FollowingSentinelPool` instead.
The consumer's BRPOP connection is held for good and stays on the old primary
until the demotion closes it: it drains what was published there before the
publishers moved (nothing is lost), and takes what is published to the new
primary only then (BENCHMARKS.md, "Redis failover": a ~10 s delivery gap).

The Sentinels come from the transport option ``sentinels`` (``[(host, port),
...]``), not from ``;``-separated alternates in the URL: on a connection error
kombu switches to the next alternate and, doing so, to the transport its scheme
names, which would swap this one out. :func:`common.broker.kombu_broker` sets it
up (``broker_transport`` names this module).
"""

from __future__ import annotations

import redis
from kombu.transport.redis import SentinelChannel, SentinelTransport
from redis.backoff import NoBackoff
from redis.retry import Retry

from common.redis.client import FollowingSentinelPool, SentinelGroupClient

__all__ = ["FollowingSentinelChannel", "FollowingSentinelTransport"]


class FollowingSentinelChannel(SentinelChannel):
    """A sentinel channel whose pools re-ask where the primary is every second."""

    from_transport_options = SentinelChannel.from_transport_options + ("sentinels",)
    sentinels: list[tuple[str, int]] | None = None

    def _connparams(self, asynchronous=False):
        # After a lost connection Celery's consumer collects the kombu connection (which
        # detaches the transport) and then closes it; the second close tries again to put
        # the unacked messages back and builds a pool from the detached transport: an
        # AttributeError that stops the worker. As a connection error it is ignored; the
        # messages come back by the visibility timeout or the dispatcher's redispatch.
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous)

    def _sentinel_managed_pool(self, asynchronous=False):
        params = self._connparams(asynchronous)
        host, port = params.pop("host", None), params.pop("port", None)
        # redis-py's default, three retries with backoff, held an API publish for 2 s
        # while no primary was elected; kombu and Celery's consumer retry on their own.
        params["retry"] = Retry(NoBackoff(), 0)
        nodes = [(h, int(p)) for h, p in self.sentinels or [(host, port)]]
        master_name = getattr(self, "master_name", None)
        if master_name is None:
            raise ValueError("'master_name' transport option must be specified.")
        manager = SentinelGroupClient(
            nodes,
            min_other_sentinels=getattr(self, "min_other_sentinels", 0),
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        # kombu closes the Sentinel clients it keeps here (_disconnect_pools).
        if asynchronous:
            self._async_sentinel_manager = manager
        else:
            self._sentinel_manager = manager
        credentials = {k: params[k] for k in ("username", "password") if k in params}
        return manager.master_for(
            master_name,
            redis.Redis,
            connection_pool_class=FollowingSentinelPool,
            **credentials,
        ).connection_pool


class FollowingSentinelTransport(SentinelTransport):
    Channel = FollowingSentinelChannel
