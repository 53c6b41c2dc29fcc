"""Test hosts in network namespaces, for tests and benchmarks of what crosses a
machine boundary ("a worker host loses Redis but not PostgreSQL").

A :class:`Network` is a private /24 (``10.77.N.0/24``, an ``N`` no route of
this machine uses) on a bridge in a namespace of its own. Each host is a
namespace with one veth into that bridge (``eth0``, address ``.1``, ``.2``,
...) and no default route, so nothing it runs can reach anything but the
other hosts. The test process itself is the controller: a veth from the
namespace it runs in (``.254``, and ``.253`` as a second address) so it can
reach every host and serve receivers to them.

    with Network(["pg", "redis", "w1"]) as net:
        redis = net.start_redis("redis")
        worker = net.host("w1").process(JengaProcess.celery(..., env=env))
        net.cut("w1", "redis", 6379)    # DROP both ways, inside w1 only
        net.heal("w1")
        net.degrade("w1", "redis", 6379, delay=0.2, loss=0.05)

Names carry the owner's pid (``jn<pid hex><2 random>-<host>``), so parallel
runs never collide and :func:`sweep` removes what a dead run left behind.
Everything is removed on ``close`` however the test ended. Needs root and
``ip netns add``: :func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import (
    ROOT,
    JengaProcess,
    _postgres_user,
    port_open,
    postgres_bin_dir,
    redis_server_binary,
    wait_for,
)

__all__ = ["Host", "Network", "Server", "sweep", "unavailable"]

PREFIX = "jn"
SUPERNET = ipaddress.ip_network("10.77.0.0/16")
CONTROLLER, CONTROLLER_2 = 254, 253
PROXY_MARK = 0x4A
_LOCK = Path("/run/jenga-netns.lock")
_NAME_RE = re.compile(rf"^{PREFIX}([0-9a-f]+)([0-9a-f]{{2}})-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "multi-host tests need root (ip netns add, veth, iptables)"
    for tool in ("ip", "iptables", "ss"):
        if shutil.which(tool) is None:
            return f"multi-host tests need {tool} (iproute2 / iptables)"
    probe = f"{PREFIX}{os.getpid():x}zz-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def sweep() -> list[str]:
    """Remove the namespaces and controller links of runs whose process is gone."""

    def dead(name: str) -> bool:
        match = _NAME_RE.match(name)
        if not match:
            return False
        try:
            os.kill(int(match.group(1), 16), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    removed = []
    names = _ip("netns", "list", check=False).stdout.split()
    for name in (n for n in names if n.startswith(PREFIX) and dead(n)):
        _delete_netns(name)
        removed.append(name)
    links = _ip("-o", "link", "show", check=False).stdout
    for name in re.findall(rf"^\d+: ({PREFIX}[0-9a-f]+c)[@:]", links, re.M):
        if dead(name[:-1] + "-"):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


@dataclass
class Host:
    name: str
    netns: str
    address: str

    def command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(list(args)), check=check, capture_output=True, text=True, timeout=30
        )

    def process(self, process: JengaProcess) -> JengaProcess:
        """``process`` (not started yet), to be started on this host: ``ip netns
        exec`` execs the command in place, so its pid and process group stay."""
        process.args = self.command(process.args)
        return process


@dataclass
class Server:
    """A server process on a host; ``stop`` kills it."""

    host: Host
    port: int
    proc: subprocess.Popen
    dir: str
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class _Degraded:
    proxy: subprocess.Popen
    rules: list[list[str]] = field(default_factory=list)


class Network:
    def __init__(self, hosts: list[str]):
        self.run_id = f"{os.getpid():x}{random.randrange(256):02x}"
        self.hosts: dict[str, Host] = {}
        self._names = list(hosts)
        self.subnet: ipaddress.IPv4Network | None = None
        self.controller = self.controller_2 = ""
        self._switch = f"{PREFIX}{self.run_id}-switch"
        self._root_link = f"{PREFIX}{self.run_id}c"
        self._rules: dict[str, list[list[str]]] = {}
        self._degraded: dict[str, _Degraded] = {}
        self._servers: list[Server] = []
        self._proxy_port = 16000

    # --- building and tearing down -----------------------------------------
    def start(self) -> Network:
        sweep()
        try:
            _ip("netns", "add", self._switch)
            self._ns_ip(self._switch, "link", "set", "lo", "up")
            self._ns_ip(self._switch, "link", "add", "br0", "type", "bridge")
            self._ns_ip(self._switch, "link", "set", "br0", "up")
            with _locked():  # two runs must not pick the same subnet
                self.subnet = _free_subnet()
                self._link(self._root_link, None, CONTROLLER)
                self.controller = str(self.subnet[CONTROLLER])
                self.controller_2 = str(self.subnet[CONTROLLER_2])
                _ip("addr", "add", f"{self.controller_2}/32", "dev", self._root_link)
            for index, name in enumerate(self._names, start=1):
                netns = f"{PREFIX}{self.run_id}-{name}"
                _ip("netns", "add", netns)
                self._ns_ip(netns, "link", "set", "lo", "up")
                self._link(f"{PREFIX}{self.run_id}{index}", netns, index)
                self.hosts[name] = Host(name, netns, str(self.subnet[index]))
        except BaseException:
            self.close()
            raise
        return self

    def _link(self, name: str, netns: str | None, index: int) -> None:
        """A veth from ``netns`` (None: the controller's) into the switch's bridge."""
        peer = f"{name}p"
        _ip("link", "add", name, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", self._switch)
        self._ns_ip(self._switch, "link", "set", peer, "master", "br0", "up")
        address = f"{self.subnet[index]}/{self.subnet.prefixlen}"
        if netns is None:
            _ip("addr", "add", address, "dev", name)
            _ip("link", "set", name, "up")
            return
        _ip("link", "set", name, "netns", netns)
        self._ns_ip(netns, "link", "set", name, "name", "eth0")
        self._ns_ip(netns, "addr", "add", address, "dev", "eth0")
        self._ns_ip(netns, "link", "set", "eth0", "up")

    @staticmethod
    def _ns_ip(netns: str, *args: str) -> None:
        _ip("-n", netns, *args)

    def close(self) -> None:
        for degraded in self._degraded.values():
            _end(degraded.proxy)
        self._degraded.clear()
        for server in self._servers:
            server.close()
        self._servers.clear()
        for host in self.hosts.values():
            _delete_netns(host.netns)
        _delete_netns(self._switch)
        _ip("link", "del", self._root_link, check=False)  # gone with its peer, usually

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def host(self, name: str) -> Host:
        return self.hosts[name]

    # --- faults --------------------------------------------------------------
    def cut(self, host: str, server: str, port: int) -> None:
        """Drop every packet between ``host`` and ``server``'s ``port``, both
        ways, inside ``host`` only: a partition, not a refusal (connections hang)."""
        target = self.hosts[server].address
        rules = [
            ["OUTPUT", "-d", target, "-p", "tcp", "--dport", str(port), "-j", "DROP"],
            ["INPUT", "-s", target, "-p", "tcp", "--sport", str(port), "-j", "DROP"],
        ]
        for rule in rules:
            self.hosts[host].run("iptables", "-I", *rule)
        self._rules.setdefault(host, []).extend(rules)

    def heal(self, host: str) -> None:
        """Undo every cut and degradation of ``host``."""
        for rule in self._rules.pop(host, []):
            self.hosts[host].run("iptables", "-D", *rule, check=False)
        degraded = self._degraded.pop(host, None)
        if degraded is not None:
            for rule in degraded.rules:
                self.hosts[host].run("iptables", *rule, check=False)
            _end(degraded.proxy)  # its connections close; clients reconnect directly

    def degrade(self, host: str, server: str, port: int, delay: float, loss: float) -> None:
        """Add ``delay`` seconds to what ``host`` sends to ``server:port`` and
        drop a ``loss`` share of the packets both ways. Existing connections
        are reset so that they reconnect through the delay."""
        node, target = self.hosts[host], self.hosts[server].address
        self._proxy_port += 1
        proxy = subprocess.Popen(
            node.command(
                [
                    sys.executable,
                    "-m",
                    "tests.support.latency_proxy",
                    "--port",
                    str(self._proxy_port),
                    "--upstream",
                    f"{target}:{port}",
                    "--delay",
                    str(delay),
                    "--mark",
                    hex(PROXY_MARK),
                ]
            ),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert "ready" in (proxy.stdout.readline() or ""), "the latency proxy did not start"
        match = ["-d", target, "-p", "tcp", "--dport", str(port)]
        rules = [
            ["-t", "nat", "-I", "OUTPUT", *match, "-m", "mark", "!", "--mark", hex(PROXY_MARK)]
            + ["-j", "REDIRECT", "--to-ports", str(self._proxy_port)],
        ]
        if loss > 0:
            chance = ["-m", "statistic", "--mode", "random", "--probability", str(loss)]
            rules += [
                ["-I", "OUTPUT", *match, *chance, "-j", "DROP"],
                ["-I", "INPUT", "-s", target, "-p", "tcp", "--sport", str(port), *chance]
                + ["-j", "DROP"],
            ]
        for rule in rules:
            node.run("iptables", *rule)
        self._degraded[host] = _Degraded(proxy, _deletions(rules))
        node.run("ss", "-K", "dst", target, "dport", "=", f":{port}", check=False)

    # --- servers -------------------------------------------------------------
    def start_redis(self, host: str, port: int = 6379) -> Server:
        node = self.hosts[host]
        folder = tempfile.mkdtemp(prefix=f"jenga-redis-{host}-")
        proc = subprocess.Popen(
            node.command(
                [redis_server_binary(), "--bind", node.address, "--port", str(port)]
                + ["--protected-mode", "no"]  # its only clients are the other test hosts
                + ["--save", "", "--appendonly", "no", "--dir", folder]
                + ["--logfile", os.path.join(folder, "redis.log")]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Server(node, port, proc, folder, f"redis://{node.address}:{port}/0")
        self._servers.append(server)
        wait_for(lambda: port_open(node.address, port), 15, what=f"redis on {host}")
        return server

    def start_postgres(self, host: str, port: int = 5432) -> Server:
        """A throwaway PostgreSQL (trust auth, database ``jenga``) on ``host``;
        run as the user :mod:`tests.support.servers` uses (it refuses root)."""
        import psycopg

        node = self.hosts[host]
        folder = tempfile.mkdtemp(prefix=f"jenga-pg-{host}-")
        os.chmod(folder, 0o777)
        data, bin_dir, user = os.path.join(folder, "data"), postgres_bin_dir(), _postgres_user()
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "-A", "trust"]
            + ["--no-sync", "-E", "UTF8"],
            check=True,
            cwd=folder,
            capture_output=True,
            **user,
        )
        with open(os.path.join(data, "pg_hba.conf"), "a") as hba:  # initdb trusts loopback only
            hba.write(f"host all all {self.subnet} trust\n")
        as_user = ["setpriv", f"--reuid={user['user']}", f"--regid={user['group']}"]
        as_user += ["--init-groups"] if user else []
        proc = subprocess.Popen(
            node.command(
                (as_user if user else [])
                + [str(bin_dir / "postgres"), "-D", data, "-p", str(port), "-h", node.address]
                + ["-k", folder, "-c", "fsync=off", "-c", "full_page_writes=off"]
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(folder, "pg.log"), "ab"),
            cwd=folder,
        )
        admin = f"postgresql://postgres@{node.address}:{port}/postgres"
        server = Server(node, port, proc, folder, f"postgresql://postgres@{node.address}:{port}")
        self._servers.append(server)

        def accepts() -> bool:
            with psycopg.connect(admin, connect_timeout=1):
                return True

        wait_for(accepts, 30, interval=0.1, what=f"postgres on {host}")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE jenga")
        server.url += "/jenga"
        return server


def _delete_netns(name: str) -> None:
    """Kill what still runs in namespace ``name`` (a server or process a failed
    test left), then remove it: a namespace lives on while a process is in it."""
    for pid in _ip("netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name, check=False)


def _deletions(rules: list[list[str]]) -> list[list[str]]:
    """The ``iptables`` arguments that delete each inserted rule."""
    return [[("-D" if arg == "-I" else arg) for arg in rule] for rule in rules]


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.77.0.0/16 that no address or route of this namespace touches."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(first, strict=False))
    free = [
        net
        for net in SUPERNET.subnets(new_prefix=24)
        if net.network_address.packed[2] != 0 and not any(net.overlaps(u) for u in used)
    ]
    if not free:
        raise RuntimeError("no free /24 left in 10.77.0.0/16 for a test network")
    return random.choice(free)


@contextlib.contextmanager
def _locked():
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
