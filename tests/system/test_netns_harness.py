"""The multi-host harness itself (:mod:`tests.support.netns`): hosts reach each
other and nothing else, a cut blackholes one server for one host only and heals,
a degraded link is slow, and teardown and the sweep leave no namespace behind."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from tests.support import netns

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _namespaces_work():
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def ping(host: netns.Host, server: netns.Host, timeout: float = 2) -> tuple[bool, float]:
    """A Redis PING from ``host``: whether it answered, and how long it took."""
    started = time.monotonic()
    done = host.run("timeout", str(timeout), "redis-cli", "-h", server.address, "ping", check=False)
    return done.stdout.strip() == "PONG", time.monotonic() - started


def test_cut_heal_degrade_and_teardown():
    with netns.Network(["redis", "a", "b"]) as net:
        ours = {h.netns for h in net.hosts.values()}
        assert ours <= namespaces()
        net.start_redis("redis")
        server, a, b = net.host("redis"), net.host("a"), net.host("b")
        assert redis.Redis(host=server.address, socket_timeout=2).ping()  # from the controller
        assert ping(a, server)[0] and ping(b, server)[0]
        # A host has no route off the network and nothing on its own loopback.
        assert a.run("redis-cli", "-h", "127.0.0.1", "ping", check=False).stdout.strip() == ""

        net.cut("a", "redis", 6379)
        assert not ping(a, server)[0]  # blackholed, not refused: the timeout ran out
        assert ping(b, server)[0]  # the other host is unaffected
        net.heal("a")
        assert ping(a, server)[0]

        net.degrade("a", "redis", 6379, delay=0.3, loss=0.0)
        answered, slow = ping(a, server)
        assert answered and slow >= 0.6, slow  # the connect and the PING, 0.3 s each
        fast = ping(b, server)[1]
        assert slow - fast >= 0.4, (slow, fast)
        net.heal("a")
        answered, healed = ping(a, server)
        assert answered and slow - healed >= 0.4, (slow, healed)
    assert not ours & namespaces()


def test_sweep_removes_what_a_dead_run_left():
    # Pid 4194304 is above the kernel's pid_max: no process can hold it.
    left = f"{netns.PREFIX}{4194304:x}00-w1"
    subprocess.run(["ip", "netns", "add", left], check=True)
    try:
        assert left in netns.sweep()
        assert left not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", left], capture_output=True)
