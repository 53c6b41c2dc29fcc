"""A deploy loses no in-flight work: SIGTERM to a worker's process group (honcho,
foreman, Heroku) or to its main process alone (Kubernetes) lets the deliveries
in flight finish within ``SHUTDOWN_GRACE_SECONDS``; one that outlasts the grace
goes to another worker at once, not after ``DELIVERY_REDISPATCH_SECONDS``. The
API finishes the requests in flight and stops accepting; beat exits cleanly."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.support.brokers import BROKERS, RABBITMQ_URL
from tests.support.receiver import Received, Reply, WebhookReceiver
from tests.support.servers import JengaProcess, port_open, wait_for
from tests.support.stack import (
    AUTH,
    create_endpoint,
    fresh_database,
    running,
    send,
    stack_env,
    start_api,
    start_beat,
)
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.slow

GRACE = 4.0  # the test's SHUTDOWN_GRACE_SECONDS
# Where the deliveries fit: theirs, plus Celery's own prefork shutdown (2-4 s here).
DRAIN_GRACE = 10.0
SHORT = 1.5  # a delivery that fits in the grace (the receiver's answer takes this long)
LONG = 12.0  # one that does not (still below DELIVERY_TIMEOUT_SECONDS)
REDISPATCH = 300.0  # the default: a message handed on must not wait for it


def slow_receiver(receiver: WebhookReceiver) -> None:
    """Answers after the payload's ``delay`` the first time a message arrives,
    at once after that."""
    seen: set[str] = set()
    lock = threading.Lock()

    def respond(request: Received) -> Reply:
        with lock:
            first = request.webhook_id not in seen
            seen.add(request.webhook_id)
        if first:
            time.sleep(float((request.body or {}).get("data", {}).get("delay", 0)))
        return Reply(200)

    receiver.respond = respond


def start_worker(stack: ExitStack, env: dict[str, str], name: str, pool: str) -> JengaProcess:
    """A worker of the deliveries (and dispatcher) queues on ``pool``, as the Procfile runs one."""
    ns = env["JENGA_NAMESPACE"]
    worker = stack.enter_context(
        running(
            JengaProcess.celery(
                "worker",
                "-P",
                pool,
                "-c",
                "2",
                "-Q",
                f"{ns}.default,{ns}.deliveries",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
                "-n",
                f"{name}-{ns}@%h",
                env=env,
                name=name,
            )
        )
    )
    worker.wait_for_output("ready.", timeout=60)
    return worker


def terminate(process: JengaProcess, target: str) -> float:
    """SIGTERM to the process group (Procfile runners) or the main process
    (Kubernetes); when it was sent."""
    if target == "group":
        os.killpg(process.proc.pid, signal.SIGTERM)
    else:
        os.kill(process.proc.pid, signal.SIGTERM)
    return time.monotonic()


def attempts(database_url: str, message_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT d.status, d.attempt_count, a.status_code FROM webhook_deliveries d"
            " LEFT JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.message_id = %s",
            (message_id,),
        ).fetchall()


def duration_ms(database_url: str, message_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT a.duration_ms FROM webhook_attempts a"
            " JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.message_id = %s",
            (message_id,),
        ).fetchone()[0]


@pytest.fixture
def stack_parts(broker_env):
    with fresh_database() as database_url, ExitStack() as stack, WebhookReceiver() as receiver:
        slow_receiver(receiver)
        env = stack_env(
            broker_env,
            database_url,
            SHUTDOWN_GRACE_SECONDS=str(GRACE),
            DELIVERY_TIMEOUT_SECONDS="20",
            DELIVERY_REDISPATCH_SECONDS=str(REDISPATCH),
            TASK_TIME_LIMIT_SECONDS="60",
        )
        client = start_api(stack, env)
        endpoint = create_endpoint(client, receiver)
        yield env, client, endpoint, receiver, database_url


@pytest.mark.parametrize(
    ("pool", "target"), [("prefork", "group"), ("prefork", "main"), ("threads", "group")]
)
def test_deliveries_in_flight_finish_on_sigterm(stack_parts, pool, target):
    """Both deliveries in flight complete and are recorded once; the worker exits
    as soon as they have, within the grace."""
    env, client, endpoint, receiver, database_url = stack_parts
    env = {**env, "SHUTDOWN_GRACE_SECONDS": str(DRAIN_GRACE)}
    with ExitStack() as stack:
        worker = start_worker(stack, env, "drained", pool)
        sent = [send(client, endpoint["id"], {"delay": SHORT, "n": n})["id"] for n in range(2)]
        wait_for(lambda: len(receiver.requests) == 2, 30, what="both deliveries in flight")

        signalled = terminate(worker, target)
        worker.proc.wait(DRAIN_GRACE + 10)
        took = time.monotonic() - signalled
        print(f"drained ({pool}, SIGTERM to {target}): exited {took:.2f}s after SIGTERM")

    assert worker.proc.returncode == 0, worker.output()[-3000:]
    assert took < DRAIN_GRACE, f"the worker took {took:.1f}s to exit"
    assert "worker.shutdown_cut" not in worker.output()
    for message_id in sent:
        assert attempts(database_url, message_id) == [("delivered", 1, 200)]
        assert len(receiver.by_id()[message_id]) == 1
        assert duration_ms(database_url, message_id) >= SHORT * 1000  # it was in flight
    assert "WorkerLostError" not in worker.output()


@pytest.mark.parametrize(
    ("pool", "how"), [("prefork", "SIGTERM"), ("threads", "SIGTERM"), ("prefork", "SIGQUIT")]
)
def test_delivery_outlasting_the_grace_goes_to_another_worker_at_once(stack_parts, pool, how):
    """Cut at the grace's end (SIGTERM to the group), or at once (SIGQUIT to the main
    process: the cold shutdown), the delivery is released: a second worker sends it
    within seconds (not REDISPATCH), and it is recorded once."""
    env, client, endpoint, receiver, database_url = stack_parts
    with ExitStack() as stack:
        victim = start_worker(stack, env, "victim", pool)
        message_id = send(client, endpoint["id"], {"delay": LONG})["id"]
        wait_for(lambda: len(receiver.requests) == 1, 30, what="the delivery in flight")
        start_worker(stack, env, "survivor", "threads")
        start_beat(stack, env)

        if how == "SIGQUIT":
            os.kill(victim.proc.pid, signal.SIGQUIT)
            signalled = time.monotonic()
        else:
            signalled = terminate(victim, "group")
        victim.proc.wait(GRACE + 10)
        exited = time.monotonic() - signalled
        wait_for(lambda: len(receiver.requests) == 2, 60, what="the delivery sent again")
        resent = time.monotonic() - signalled
        print(f"cut ({pool}, {how}): exited after {exited:.2f}s, sent again after {resent:.2f}s")

        # Celery's own cold shutdown takes a few seconds more (billiard, the broker).
        cut_at = GRACE if how == "SIGTERM" else 0.0
        assert exited < cut_at + 8, f"the worker took {exited:.1f}s to exit"
        assert resent < cut_at + 12, f"sent again {resent:.1f}s after {how}"
        assert receiver.requests[1].webhook_id == message_id
        wait_for(
            lambda: attempts(database_url, message_id) == [("delivered", 1, 200)],
            30,
            what="the second attempt recorded, and only it",
        )


def test_api_finishes_requests_in_flight_and_stops_accepting(broker_env):
    """A POST waiting on PostgreSQL when SIGTERM arrives is answered 202; the
    listener is closed meanwhile; the API exits once the request is done."""
    with fresh_database() as database_url, ExitStack() as stack, WebhookReceiver() as receiver:
        env = stack_env(broker_env, database_url, SHUTDOWN_GRACE_SECONDS="30")
        port = int(env["PORT"])
        web = stack.enter_context(running(JengaProcess.api(env)))
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10))
        wait_for(lambda: client.get("/live").status_code == 200, 30, what="the API")
        endpoint = create_endpoint(client, receiver)
        results: list[httpx.Response] = []

        def post() -> None:
            body = {"endpoint_id": endpoint["id"], "event_type": "t", "payload": {}}
            results.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/v1/messages", json=body, headers=AUTH, timeout=30
                )
            )

        poster = threading.Thread(target=post)
        with psycopg.connect(database_url) as blocker:
            # Holds the insert of every new message until this transaction ends.
            blocker.execute("LOCK TABLE webhook_messages IN EXCLUSIVE MODE")
            poster.start()
            wait_for(lambda: _waiting_on_lock(database_url), 10, what="the POST in flight")
            signalled = terminate(web, "group")
            wait_for(lambda: not port_open("127.0.0.1", port), 10, what="the listener closed")
            assert web.alive() and poster.is_alive()
        poster.join(10)
        web.proc.wait(10)
        assert time.monotonic() - signalled < 10
        assert results and results[0].status_code == 202, results
        # uvicorn ends by raising the signal it caught again, for the caller to see.
        assert web.proc.returncode in (0, -signal.SIGTERM), web.output()[-3000:]


def _waiting_on_lock(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation IS NOT NULL"
            ).fetchone()[0]
        )


def test_beat_exits_cleanly_on_sigterm(broker_env):
    with fresh_database() as database_url, ExitStack() as stack:
        env = stack_env(broker_env, database_url)
        beat = start_beat(stack, env)
        beat.wait_for_output("beat: Starting...", timeout=30)
        signalled = terminate(beat, "group")
        beat.proc.wait(GRACE + 10)
        assert time.monotonic() - signalled < GRACE
        assert beat.proc.returncode == 0, beat.output()[-3000:]
        assert "Traceback" not in beat.output()


def test_beat_exits_on_sigterm_when_the_broker_stops_answering(settings_env, namespace):
    """Celery 5.7's scheduler closes its broker connection at shutdown, and an AMQP close
    waits for the broker's answer with no time limit: a broker that stopped answering
    kept a SIGTERM'd beat (and its lease) for ever. The wait is bounded by
    CHECK_TIMEOUT_SECONDS, and the lease is released for a standby."""
    rabbitmq = next(b for b in BROKERS if b.name == "rabbitmq")
    if reason := rabbitmq.skip_reason():
        pytest.skip(reason)
    upstream = urlsplit(RABBITMQ_URL)
    with (
        TcpRelay((upstream.hostname or "127.0.0.1", upstream.port or 5672)) as relay,
        fresh_database() as database_url,
        ExitStack() as stack,
    ):
        env = stack_env(
            {**settings_env, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{relay.port}//"},
            database_url,
            CHECK_TIMEOUT_SECONDS="1",
        )
        beat = start_beat(stack, env)
        beat.wait_for_output("beat.active", timeout=30)
        # Its publishing connection is open (the dispatcher is sent every 0.3 s).
        wait_for(lambda: relay.connections >= 1, 10, what="beat's broker connection")
        time.sleep(1.0)  # a few sends through it
        relay.freeze()
        signalled = terminate(beat, "group")
        beat.proc.wait(30)
        assert time.monotonic() - signalled < 10, beat.output()[-3000:]
        assert beat.proc.returncode == 0, beat.output()[-3000:]
        assert "beat.released" in beat.output()
