"""No level: the shared-state client of a Redis Cluster (``redis+cluster://``).

Every Jenga key carries the hash tag ``{namespace}`` (:mod:`common.redis.keys`),
so all of a deployment's state sits in one hash slot, on one primary at a time:
every Lua script, transaction, multi-key command and pipeline works as on one
server, and the cluster gives failover (a replica takes the slot over), not
sharding. :class:`SharedStateCluster` is redis-py's ``RedisCluster`` made to fit
the rest of Jenga:

* **Lazy.** redis-py's constructor asks the nodes for the slot map (and for
  ``COMMAND``); boot never waits on Redis, so that happens on the first command.
* **Outages are connection errors.** redis-py raises ``RedisClusterException``
  (not a ``RedisError``) when no node answers or a slot has no primary; callers
  handle an unreachable Redis by catching ``redis.RedisError`` (breakers fall back
  per process), so those become ``redis.ConnectionError``. A cross-slot command is
  a programming error and stays one.
* **No hidden retries.** As for one server, retries belong to the callers; a
  failed command has refreshed the slot map, so the next call reaches the new
  primary (``MOVED``/``ASK`` are followed at once, as redis-py does).
* **Keyless commands go to the namespace's primary**: ``PING`` (the health check,
  as a keyed ``EXISTS`` so that ``CLUSTERDOWN`` shows), ``TIME`` (the scripts and
  the stores read one clock), ``WAIT``, ``SCAN`` (all keys are on that node, so
  scanning it is scanning everything) and ``SCRIPT LOAD``; ``TIME`` is allowed in
  pipelines.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import redis
from redis._parsers import Encoder
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, NodesManager, RedisCluster
from redis.commands.core import Script
from redis.exceptions import CrossSlotTransactionError, InvalidPipelineStack, RedisClusterException
from redis.retry import Retry

from common.redis.keys import hash_tag
from common.redis.urls import ClusterURL

__all__ = ["SharedStateCluster", "hash_tag"]

# Raised for a mistake in the commands sent, not for a cluster that does not answer.
_PROGRAMMING_ERRORS = (CrossSlotTransactionError, InvalidPipelineStack)


def _as_connection_error(error: RedisClusterException) -> redis.ConnectionError:
    # redis-py's text quotes the last node's error (addresses, never the password).
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return redis.ConnectionError(f"Redis Cluster unavailable: {first[:200]}")


@contextlib.contextmanager
def _outage_as_connection_error() -> Iterator[None]:
    try:
        yield
    except _PROGRAMMING_ERRORS:
        raise
    except RedisClusterException as error:
        raise _as_connection_error(error) from error


class _TaggedNodesManager(NodesManager):
    """redis-py's node map whose default node is the primary of the namespace's slot
    whenever the map knows it (redis-py sends keyless commands to the default node)."""

    tag_slot: int | None = None

    @property
    def default_node(self):
        if self.tag_slot is not None:
            nodes = self.slots_cache.get(self.tag_slot)
            if nodes:
                return nodes[0]
        return self.__dict__.get("_fallback_default_node")

    @default_node.setter
    def default_node(self, node) -> None:
        self.__dict__["_fallback_default_node"] = node


class _SharedStatePipeline(ClusterPipeline):
    """A cluster pipeline that may read ``TIME`` (from the default node: the
    namespace's primary) and run Lua scripts (loaded on that primary first, as
    redis-py's one-server pipeline does), and that reports an unreachable cluster as a
    connection error."""

    def __init__(self, client: SharedStateCluster, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.scripts: set[Script] = set()

    def time(self):
        return self.execute_command("TIME")

    def evalsha(self, sha, numkeys, *keys_and_args):
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with _outage_as_connection_error():
            if self.scripts:
                self.client.load_scripts(self.scripts)
            return super().execute(raise_on_error)


class _ClusterScript(Script):
    """redis-py's Script, which does not know that a cluster pipeline may run it."""

    def __call__(self, keys=None, args=None, client=None):
        if isinstance(client, _SharedStatePipeline):
            client.scripts.add(self)
            keys, args = list(keys or []), list(args or [])
            return client.evalsha(self.sha, len(keys), *keys, *args)
        return super().__call__(keys, args, client)


class SharedStateCluster(RedisCluster):
    """A lazily started ``RedisCluster`` for Jenga's shared state (see the module doc)."""

    def __init__(self, target: ClusterURL, namespace: str | None, options: dict[str, Any]) -> None:
        options = {k: v for k, v in options.items() if k != "retry_on_timeout"}
        self._start_options = {
            "startup_nodes": [ClusterNode(host, port) for host, port in target.nodes],
            "username": target.username,
            "password": target.password,
            # One try: a failed command refreshed the slot map, the caller decides when
            # to try again (redis-py's default is 3 retries with backoff).
            "retry": Retry(NoBackoff(), 0),
            # A slot without a primary fails the commands that need it, not the client.
            "require_full_coverage": False,
            **options,
        }
        self._tag = hash_tag(namespace) if namespace else None
        self._started = False
        self._starting = False  # the constructor's own commands (COMMAND) are under way
        self._start_lock = threading.RLock()
        # What redis-py's Script and keyslot() need before the first command.
        self.encoder = Encoder("utf-8", "strict", bool(options.get("decode_responses")))

    # --- starting ------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        with self._start_lock:
            if self._started or self._starting:
                return
            self._starting = True
            try:
                with _outage_as_connection_error():
                    super().__init__(**self._start_options)
            finally:
                self._starting = False
            manager = self.nodes_manager
            fallback = manager.__dict__.pop("default_node", None)
            manager.__class__ = _TaggedNodesManager
            manager.default_node = fallback
            if self._tag is not None:
                manager.tag_slot = self.keyslot(self._tag)
                for command in ("SCAN", "SCRIPT LOAD", "SCRIPT EXISTS", "KEYS"):
                    self.command_flags[command] = self.DEFAULT_NODE
            self._started = True

    @property
    def started(self) -> bool:
        """Whether the first command has been sent (the slot map read)."""
        return self._started

    # --- commands --------------------------------------------------------------

    def execute_command(self, *args, **kwargs):
        self._start()
        with _outage_as_connection_error():
            return super().execute_command(*args, **kwargs)

    def ping(self, **kwargs) -> bool:
        """A keyed read of the namespace's slot: true when its primary answers and
        the cluster serves it (``PING`` answers even while the cluster is down)."""
        if self._tag is None:
            return super().ping(**kwargs)
        self.execute_command("EXISTS", self._tag)
        return True

    def time(self, **kwargs):
        return self.execute_command("TIME", **kwargs)

    def scan_iter(self, match=None, count=None, _type=None, **kwargs) -> Iterator:
        """Keys matching ``match``, from the namespace's primary alone (every key of
        the namespace is there; other primaries, up or not, hold none)."""
        if self._tag is None:
            self._start()
            yield from super().scan_iter(match=match, count=count, _type=_type, **kwargs)
            return
        self._start()
        cursor = 0
        while True:
            node = self.get_default_node()
            cursors, keys = self.scan(
                cursor=cursor, match=match, count=count, _type=_type, target_nodes=node
            )
            yield from keys
            cursor = cursors[node.name]
            if cursor == 0:
                return

    def register_script(self, script) -> Script:
        return _ClusterScript(self, script)

    def load_scripts(self, scripts: set[Script]) -> None:
        """Load those of ``scripts`` that the namespace's primary lacks (a promoted
        replica has none: scripts are not replicated)."""
        ordered = list(scripts)
        present = self.execute_command("SCRIPT EXISTS", *(script.sha for script in ordered))
        for script, exists in zip(ordered, present, strict=True):
            if not exists:
                script.sha = self.execute_command("SCRIPT LOAD", script.script)

    def pipeline(self, transaction=None, shard_hint=None):
        self._start()
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _SharedStatePipeline(
            self,
            nodes_manager=self.nodes_manager,
            commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes,
            result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks,
            read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy,
            reinitialize_steps=self.reinitialize_steps,
            retry=self.retry,
            lock=self._lock,
            transaction=transaction,
            event_dispatcher=self._event_dispatcher,
        )

    def pubsub(self, node=None, host=None, port=None, **kwargs):
        self._start()
        with _outage_as_connection_error():
            return super().pubsub(node, host, port, **kwargs)

    def get_node_from_key(self, key, replica=False):
        self._start()
        return super().get_node_from_key(key, replica)

    def close(self) -> None:
        if self._started:
            super().close()

    def __del__(self) -> None:
        if getattr(self, "_started", False):
            with contextlib.suppress(Exception):
                self.close()
