"""A fleet across machines (network namespaces, :mod:`tests.support.netns`): one
host each for PostgreSQL, the state Redis (alarms, breakers, heartbeats), the
broker Redis, the API, beat and two delivery workers, and the test process as
the receivers' host. Each scenario cuts one host off from one server (or slows
its link), checks that nothing is lost and what the health and alarms say, and
heals it.

The broker is a Redis of its own so that a host can lose the state Redis and
keep its broker (with one Redis for both, losing Redis is losing the broker,
which ``test_worker_outage`` covers). RabbitMQ is not run here: a throwaway one
per run costs more boot time and memory than these scenarios are worth, and
what they test (a partition between a host and one server) does not depend on
which broker carries the tasks.

``w1`` also runs the ops queues (watchdogs, dispatcher, alarms); the faults
are made on ``w2``, so the fleet's own view of its dependencies stays right.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from tests.support import netns
from tests.support.receiver import WebhookReceiver
from tests.support.servers import ROOT, JengaProcess, wait_for
from tests.support.stack import AUTH, create_endpoint, message, migrate_database, running, send
from tests.support.stack import stack_env as make_stack_env

pytestmark = pytest.mark.slow

HOSTS = ["pg", "redis", "broker", "api", "beat", "w1", "w2"]
PORT = 8000
SHORT = {
    "CONFIG_WAIT_SECONDS": "0",
    "RECONNECT_BASE_SECONDS": "0.1",
    "RECONNECT_CAP_SECONDS": "1",
    "CHECK_INTERVAL_SECONDS": "0.5",
    "CHECK_TIMEOUT_SECONDS": "1",
    # Live means a beat within 3 intervals; a beat cut off from Redis also waits on
    # its Redis writes (socket timeouts), so the interval leaves room for them.
    "HEARTBEAT_INTERVAL_SECONDS": "2",
    "WATCHDOG_INTERVAL_SECONDS": "1",
    "BEAT_LOCK_TTL_SECONDS": "3",
    "BEAT_LOCK_RENEW_SECONDS": "1",
    "ALARM_CLEAR_AFTER": "2",
    "DELIVERY_CONNECT_TIMEOUT_SECONDS": "1",
    "DELIVERY_TIMEOUT_SECONDS": "3",
    # A task stuck on a partitioned host is sent again soon, not after 5 minutes.
    "DELIVERY_REDISPATCH_SECONDS": "5",
    # Enough tries that no message fails while a partition heals.
    "DELIVERY_RETRY_SCHEDULE": ",".join(["300ms"] * 3 + ["1s"] * 30),
    "BREAKER_OPEN_SECONDS": "2",
    "LOG_LEVEL": "INFO",
}


@dataclass
class Fleet:
    net: netns.Network
    env: dict[str, str]
    api: httpx.Client
    workers: dict[str, JengaProcess]
    receiver: WebhookReceiver
    endpoint: dict
    heartbeat_dir: str

    def hostname(self, worker: str) -> str:
        return f"{worker}@{self.env['JENGA_NAMESPACE']}"

    def heartbeat(self, worker: str) -> dict:
        with open(f"{self.heartbeat_dir}/{self.hostname(worker)}.json") as file:
            return json.load(file)

    def health(self, worker: str) -> subprocess.CompletedProcess:
        """``jenga worker health`` for ``worker``, as its host's probe would run it."""
        return subprocess.run(
            [sys.executable, "-m", "common.ops.cli", "worker", "health"]
            + ["--hostname", self.hostname(worker)],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def alarms(self) -> set[str]:
        response = self.api.get("/alarms", headers=AUTH)
        assert response.status_code == 200, response.text
        return {alarm["id"] for alarm in response.json()["active"]}

    def send(self, count: int, endpoint: dict | None = None) -> list[str]:
        target = endpoint or self.endpoint
        return [send(self.api, target["id"], {"n": n})["id"] for n in range(count)]

    def delivered_by(self, worker: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` ``worker`` recorded an attempt of."""
        lines = [line for line in self.workers[worker].output().splitlines() if "attempt" in line]
        return {i for i in ids if any(i in line for line in lines)}

    def parked_by(self, worker: str, endpoint_id: str) -> bool:
        """Whether ``worker`` was refused by the breaker of ``endpoint_id``'s receiver."""
        lines = self.workers[worker].output().splitlines()
        return any("delivery.parked" in line and endpoint_id in line for line in lines)

    def all_delivered(self, ids: list[str], receiver: WebhookReceiver | None = None, timeout=45):
        """Every message ``delivered``, seen by the receiver; returns the
        number of POSTs of each (duplicates are the caller's to judge)."""
        receiver = receiver or self.receiver
        wait_for(
            lambda: set(ids) <= receiver.accepted_ids(), timeout, interval=0.2, what="deliveries"
        )
        # The receiver's 2xx comes before the worker records it: wait for the record too.
        for message_id in ids:
            wait_for(
                lambda i=message_id: message(self.api, i)["status"] == "delivered",
                timeout,
                interval=0.2,
                what=f"{message_id} recorded delivered",
            )
        seen = receiver.by_id()
        return {i: len(seen[i]) for i in ids}


def _worker(host: netns.Host, env: dict[str, str], name: str, queues: list[str]):
    ns = env["JENGA_NAMESPACE"]
    return host.process(
        JengaProcess.celery(
            "worker",
            "-P",
            "threads",
            "-c",
            "1",
            "-Q",
            ",".join(f"{ns}.{queue}" for queue in queues),
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
            "-n",
            f"{name}@{ns}",
            env=env,
            name=name,
        )
    )


@pytest.fixture(scope="module")
def fleet():
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    with ExitStack() as stack:
        net = stack.enter_context(netns.Network(HOSTS))
        database = net.start_postgres("pg")
        migrate_database(database.url)
        state, broker = net.start_redis("redis"), net.start_redis("broker")
        heartbeat_dir = tempfile.mkdtemp(prefix="jenga-hb-")
        namespace = f"t{uuid.uuid4().hex[:10]}"
        env = make_stack_env(
            {
                "REDIS_URL": state.url,
                "BROKER_URL": broker.url,
                "JENGA_NAMESPACE": namespace,
                "HEARTBEAT_DIR": heartbeat_dir,
            },
            database.url,
            PORT=str(PORT),
            **SHORT,  # over the stack's own defaults (its retry schedule is too short here)
        )
        workers = {
            "w1": _worker(net.host("w1"), env, "w1", ["default", "alarms", "deliveries"]),
            "w2": _worker(net.host("w2"), env, "w2", ["deliveries"]),
        }
        for worker in workers.values():
            stack.enter_context(running(worker))
        api_process = stack.enter_context(running(net.host("api").process(JengaProcess.api(env))))
        stack.enter_context(
            running(
                net.host("beat").process(
                    JengaProcess.celery("beat", "--loglevel=INFO", env=env, name="beat")
                )
            )
        )
        api = stack.enter_context(
            httpx.Client(base_url=f"http://{net.host('api').address}:{PORT}", timeout=10)
        )
        wait_for(
            lambda: api_process.alive() and api.get("/up").status_code == 200, 60, what="API ready"
        )
        for worker in workers.values():
            worker.wait_for_output("ready.", 60)
        receiver = stack.enter_context(WebhookReceiver(host=net.controller))
        fleet = Fleet(
            net, env, api, workers, receiver, create_endpoint(api, receiver), heartbeat_dir
        )
        wait_for(lambda: all(fleet.health(w).returncode == 0 for w in workers), 30, what="ready")
        # Both workers deliver before any fault: each scenario's "w2 delivered" means something.
        warm = fleet.send(10)
        fleet.all_delivered(warm)
        yield fleet


@pytest.fixture(autouse=True)
def _logs_on_failure(request, fleet):
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        for name, worker in fleet.workers.items():
            print(f"--- {name} output (tail) ---\n{worker.output()[-3000:]}")


def deliver_until_both_seen(fleet: Fleet, batch: int = 4, rounds: int = 15) -> list[str]:
    """Send batches until each worker has delivered one of them (routing is the
    broker's): proof that both take work."""
    sent: list[str] = []
    for _ in range(rounds):
        sent += fleet.send(batch)
        fleet.all_delivered(sent)
        if all(fleet.delivered_by(w, sent) for w in ("w1", "w2")):
            return sent
    raise AssertionError(
        f"not both workers delivered: {[fleet.delivered_by(w, sent) for w in ('w1', 'w2')]}"
    )


def test_a_worker_cut_off_from_redis_delivers_on_per_process_breakers(fleet):
    fleet.net.cut("w2", "redis", 6379)
    try:
        wait_for(
            lambda: fleet.heartbeat("w2")["dependencies"]["redis"] == "down",
            15,
            what="w2 sees Redis down",
        )
        # Messages keep arriving, w2 delivering its share on breakers of its own.
        during = []
        for _ in range(10):
            during += fleet.send(4)
            fleet.all_delivered(during)
            if fleet.delivered_by("w2", during):
                break
        assert fleet.delivered_by("w2", during), "w2 delivered nothing while cut off from Redis"
        assert fleet.delivered_by("w1", during)
        wait_for(  # said when its breakers first fail to reach Redis (a flush, a state read)
            lambda: "breaker.fallback" in fleet.workers["w2"].output(),
            15,
            what="w2 logs breaker.fallback",
        )
        wait_for(  # the next beat says so
            lambda: fleet.heartbeat("w2")["breakers"]["fallback"] is True,
            10,
            what="w2's heartbeat reports fallback breakers",
        )
        health = fleet.health("w2")
        assert health.returncode == 0, health.stdout + health.stderr  # degraded, still ready
        assert "degraded: circuit breakers run per process" in health.stdout + health.stderr
        # The rest of the fleet reaches Redis: no fallback there and no redis alarm.
        assert fleet.heartbeat("w1")["breakers"]["fallback"] is False
        assert fleet.heartbeat("w1")["dependencies"]["redis"] == "up"
        assert "redis" not in fleet.alarms()
    finally:
        fleet.net.heal("w2")
    wait_for(
        lambda: fleet.heartbeat("w2")["dependencies"]["redis"] == "up", 15, what="w2 sees Redis"
    )
    after = deliver_until_both_seen(fleet)
    wait_for(
        lambda: "breaker.fallback_ended" in fleet.workers["w2"].output(), 15, what="fallback ended"
    )
    wait_for(
        lambda: fleet.heartbeat("w2")["breakers"]["fallback"] is False,
        10,
        what="w2's heartbeat reports shared breakers again",
    )
    counts = fleet.all_delivered(during + after)
    assert set(counts.values()) == {1}, counts  # nothing in flight died: no duplicates
    assert "redis" not in fleet.alarms()


def test_a_worker_cut_off_from_postgres_loses_nothing_and_another_takes_the_work(fleet):
    fleet.net.cut("w2", "pg", 5432)
    try:
        during = fleet.send(20)
        counts = fleet.all_delivered(during, timeout=60)
        assert not fleet.delivered_by("w2", during)  # w1 took all of it
        # At most the one delivery w2 had in flight is POSTed twice (same webhook-id):
        # its record never reached PostgreSQL, and w1 delivered it again.
        assert sorted(counts.values())[-2:] in ([1, 1], [1, 2]), counts
        health = fleet.health("w2")
        assert health.returncode == 0, health.stdout  # still consuming its broker
        assert "postgres" not in fleet.alarms()  # the fleet's PostgreSQL is fine
    finally:
        fleet.net.heal("w2")
    after = deliver_until_both_seen(fleet)  # w2 delivers again
    fleet.all_delivered(after)


def test_a_worker_cut_off_from_postgres_sees_it_down_and_pauses_its_deliveries(fleet):
    output = fleet.workers["w2"].output
    before = len(output())
    fleet.net.cut("w2", "pg", 5432)
    try:
        wait_for(
            lambda: fleet.heartbeat("w2")["dependencies"]["postgres"] == "down",
            10,
            what="w2 sees PostgreSQL down",
        )
        wait_for(lambda: "worker.queues_paused" in output()[before:], 5, what="w2 paused")
    finally:
        fleet.net.heal("w2")
    wait_for(lambda: "worker.queues_resumed" in output()[before:], 30, what="w2 resumed")


def test_the_api_cut_off_from_the_broker_accepts_and_the_dispatcher_delivers(fleet):
    fleet.net.cut("api", "broker", 6379)
    try:
        wait_for(
            lambda: fleet.api.get("/up").json().get("missing") == ["broker"],
            15,
            what="the API sees the broker down",
        )
        accepted, took = [], []
        for _ in range(10):  # 202 each: stored in PostgreSQL, published later
            started = time.monotonic()
            accepted += fleet.send(1)
            took.append(time.monotonic() - started)
        counts = fleet.all_delivered(accepted, timeout=60)
        assert set(counts.values()) == {1}, counts  # the dispatcher sent each once
        assert "broker" not in fleet.alarms()  # beat reaches the broker
        # Each POST gives up on the publish within the check timeout (1 s here).
        assert max(took) < 2.5, took
        print(f"POST /v1/messages while the broker is cut off: {sorted(took)}")
    finally:
        fleet.net.heal("api")
    wait_for(lambda: fleet.api.get("/up").status_code == 200, 20, what="the API ready again")
    after = fleet.send(5)
    assert set(fleet.all_delivered(after).values()) == {1}


def test_a_slow_lossy_link_to_redis_keeps_delivering_and_hears_trips(fleet):
    with WebhookReceiver(host=fleet.net.controller_2) as tripped:
        tripped_endpoint = create_endpoint(fleet.api, tripped)
        service = f"webhook:{fleet.net.controller_2}"
        fleet.net.degrade("w2", "redis", 6379, delay=0.2, loss=0.05)
        try:
            sent = deliver_until_both_seen(fleet)
            assert set(fleet.all_delivered(sent).values()) == {1}
            # The degradation reset w2's Redis connections (so they reconnect through
            # the delay): slow is not down, its breakers are shared ones again.
            wait_for(
                lambda: fleet.heartbeat("w2")["breakers"]["fallback"] is False,
                15,
                what="w2 on shared breakers over the slow link",
            )

            # A trip made on another host (the API) reaches w2 over the slow link.
            opened = fleet.api.post(f"/breakers/{service}/open", headers=AUTH)
            assert opened.status_code == 200, opened.text
            assert f"breaker:{service}" in fleet.alarms()
            time.sleep(1.0)  # the event's way to w2: a few slow round trips
            # w1 frozen, w2 alone consumes the deliveries: it must refuse them itself.
            fleet.workers["w1"].kill(signal.SIGSTOP)
            try:
                refused = fleet.send(3, tripped_endpoint)
                wait_for(
                    lambda: fleet.parked_by("w2", tripped_endpoint["id"]),
                    20,
                    what="w2 refused by the open breaker",
                )
            finally:
                fleet.workers["w1"].kill(signal.SIGCONT)
            assert tripped.requests == []  # nobody called the receiver while it was open
            closed = fleet.api.post(f"/breakers/{service}/close", headers=AUTH)
            assert closed.status_code == 200, closed.text
            assert set(fleet.all_delivered(refused, tripped, timeout=60).values()) == {1}
            wait_for(lambda: f"breaker:{service}" not in fleet.alarms(), 15, what="alarm cleared")
        finally:
            fleet.net.heal("w2")
