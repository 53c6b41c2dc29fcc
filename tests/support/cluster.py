"""A throwaway Redis Cluster on loopback, for tests and benchmarks.

:class:`RedisClusterGroup`: three primaries, each with one replica, started as
``redis-server --cluster-enabled yes`` on free ports (the cluster bus on port +
10000 must be free too) and joined by ``redis-cli --cluster create
--cluster-replicas 1 --cluster-yes``, with a short ``cluster-node-timeout`` so that
a killed primary is replaced in a few seconds. :meth:`RedisClusterGroup.failover`
asks a replica to take over (``CLUSTER FAILOVER``), :meth:`kill_primary` makes one
happen (SIGKILL); both return once every node that is up agrees on the new slot
map and the cluster is ``ok``. The servers are
:class:`~tests.support.servers.RedisServer` (the machine's ``redis-server``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess

import redis

from tests.support.servers import RedisServer, free_port, redis_server_binary, wait_for

__all__ = ["TEST_PASSWORD", "RedisClusterGroup"]

TEST_PASSWORD = "cl-s3cret-pw"  # the tests check it never shows in logs or /health
BUS_OFFSET = 10000  # Redis Cluster's node-to-node bus listens on port + 10000


def _cluster_port() -> int:
    """A free port whose bus port is free as well."""
    for _ in range(200):
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class RedisClusterGroup:
    """``primaries`` primaries with ``replicas`` replicas each, on free ports."""

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        password: str = "",
        binary: str | None = None,
    ):
        self.binary = binary or redis_server_binary()
        self.size = primaries * (1 + replicas)
        self.primaries, self.replicas = primaries, replicas
        self.node_timeout_ms = node_timeout_ms
        self.password = password
        self.servers: dict[int, RedisServer] = {}

    # --- start and stop ----------------------------------------------------------

    def _server(self) -> RedisServer:
        port = _cluster_port()
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",  # in the server's own --dir
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica may take over however long it was cut off: the tests kill nodes.
            "--cluster-replica-validity-factor", "0",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return RedisServer(port=port, binary=self.binary, args=tuple(args))

    def start(self) -> RedisClusterGroup:
        nodes = [self._server().start() for _ in range(self.size)]
        self.servers = {node.port: node for node in nodes}
        cli = shutil.which("redis-cli") or "redis-cli"
        command = [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes)]
        command += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        if self.password:
            command += ["-a", self.password, "--no-auth-warning"]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=60)
        except subprocess.CalledProcessError as error:
            self.close()
            raise AssertionError(f"redis-cli --cluster create failed: {error.stdout!r}") from None
        wait_for(self._settled, 30, 0.05, "the cluster to agree and be ok")
        return self

    def close(self) -> None:
        for server in self.servers.values():
            server.close()

    def __enter__(self) -> RedisClusterGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- where things are --------------------------------------------------------

    def url(self, nodes: int = 2) -> str:
        """``REDIS_URL`` naming the first ``nodes`` nodes: ``redis+cluster://...``."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in list(self.servers)[:nodes])
        return f"redis+cluster://{hosts}" + (f"?password={self.password}" if self.password else "")

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, password=self.password or None, socket_timeout=2, decode_responses=True
        )

    def up(self) -> list[int]:
        return [port for port, server in self.servers.items() if server.proc is not None]

    def owner_of(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        with self.node(self.up()[0]) as client:
            slot = client.execute_command("CLUSTER KEYSLOT", key)
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        raise AssertionError(f"slot of {key!r} is not served")

    def replica_of(self, primary_port: int) -> int:
        for port in self.up():
            with self.node(port) as client:
                info = client.info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary_port:
                return port
        raise AssertionError(f"no replica of {primary_port} is up")

    # --- failing over -------------------------------------------------------------

    def failover(self, key: str, timeout: float = 20) -> int:
        """``CLUSTER FAILOVER`` on the replica of ``key``'s primary (a handover that
        loses nothing); returns the new primary's port once the cluster agrees."""
        old = self.owner_of(key)
        replica = self.replica_of(old)
        with self.node(replica) as client:
            client.execute_command("CLUSTER", "FAILOVER")
        return self._wait_new_owner(key, old, timeout)

    def kill_primary(self, key: str, timeout: float = 20) -> int:
        """SIGKILL ``key``'s primary; returns the promoted replica's port once the
        cluster agrees (about two node timeouts)."""
        old = self.owner_of(key)
        self.servers[old].stop(signal.SIGKILL)
        return self._wait_new_owner(key, old, timeout)

    def restart(self, port: int, timeout: float = 20) -> None:
        """Start a killed node again (its nodes.conf kept): it rejoins as a replica;
        returns once every node agrees on the map with that replica in it."""
        self.servers[port].start()
        wait_for(self._settled, timeout, 0.05, "the restarted node to rejoin")

    def _wait_new_owner(self, key: str, old: int, timeout: float) -> int:
        def moved() -> int | None:
            if not self._settled():
                return None
            port = self.owner_of(key)
            return port if port != old else None

        return wait_for(moved, timeout, 0.05, "a new primary for the slot")

    # --- readiness ----------------------------------------------------------------

    def _settled(self) -> bool:
        maps = set()
        for port in self.up():
            with self.node(port) as client:
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                slots = client.execute_command("CLUSTER SLOTS")
            # Every primary has its replicas attached (else a failover has no candidate).
            whole = len(self.up()) == self.size
            if whole and any(len(entry) < 3 + self.replicas for entry in slots):
                return False
            maps.add(tuple(sorted((s, e, int(p[1])) for s, e, p, *_ in slots)))
        return len(maps) == 1
