"""GuardedTask: in a real worker subprocess against a local HTTP service that
fails on demand (deferral while the breaker is open, not counted against
``max_retries``; ``ServiceUnavailableError`` after the last deferral), and the
``guard()`` block in process (``defer=False``, exception filter).

The worker loads the tasks from ``bench/bench_guarded_tasks.py``."""

from __future__ import annotations

import pytest
from celery import Celery

from common.config import load_settings, set_settings
from common.guards.breaker import policy as bp
from common.guards.breaker.registry import (
    BreakerRegistry,
    policy_from_settings,
    set_default_registry,
)
from common.guards.breaker.store import BreakerStore
from tests.support.http_server import FakeHTTPServer, Reply, Request
from tests.support.servers import JengaProcess, jenga_env, wait_for
from worker import guarded
from worker.celeryconfig import celery_config
from worker.guarded import GuardedTask, GuardRefused


class Probe(GuardedTask):
    """A GuardedTask instance used in process, only for its guard()."""

    name = "tests.guard_probe"


guarded_call = Probe()


class FlakyService(FakeHTTPServer):
    """Answers 500 while ``failing``, else 200; ``hits`` counts the requests."""

    def __init__(self):
        super().__init__()
        self.failing = False

    @property
    def hits(self) -> int:
        return len(self.requests)

    def answer(self, request: Request) -> Reply:
        return Reply(500 if self.failing else 200, body="")


@pytest.fixture
def service():
    with FlakyService() as flaky:
        yield flaky


def start_worker(settings_env, **extra):
    env = {**settings_env, **extra}
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "--without-mingle",
        "--without-gossip",
        "-Q",
        f"{settings_env['JENGA_NAMESPACE']}.default",
        "-I",
        "bench.bench_guarded_tasks",
        "--loglevel=INFO",
        env=jenga_env(**env),
        name="guarded-worker",
    ).start()
    settings = load_settings(env, wait_seconds=0)
    producer = Celery("test-producer", set_as_current=False)
    producer.conf.update(celery_config(settings))
    return worker, producer, settings


def runs(redis_client, namespace):
    return redis_client.lrange(f"{namespace}:test:runs", 0, -1)


def test_open_breaker_defers_without_spending_retries(broker_env, redis_client, namespace, service):
    worker, producer, _ = start_worker(
        broker_env,
        BREAKER_FAILURE_THRESHOLD="2",
        BREAKER_FAILURE_RATE="0",
        BREAKER_OPEN_SECONDS="2",
        GUARD_MAX_DEFERRALS="20",
    )
    try:
        worker.wait_for_output("ready.", timeout=60)
        service.failing = True
        for tag in ("a", "b"):
            producer.send_task("tests.guarded_call", args=[service.url, tag])
        wait_for(lambda: len(runs(redis_client, namespace)) == 2, 30, what="two failing calls")
        store = BreakerStore(redis_client, namespace)
        wait_for(lambda: store.read("flaky")["state"] == "open", 10, what="the breaker to open")
        service.failing = False
        hits_before = service.hits
        producer.send_task("tests.guarded_call", args=[service.url, "c"])
        wait_for(
            lambda: len(runs(redis_client, namespace)) == 3, 30, what="the deferred call to run"
        )
        tag, status, retries, deferrals = runs(redis_client, namespace)[2].split(":")
        assert (tag, status, retries) == (
            "c",
            "200",
            "0",
        )  # max_retries=0, yet it ran: deferral is not a retry
        assert int(deferrals) >= 1
        assert service.hits == hits_before + 1  # no call reached the service while it was open
        wait_for(
            lambda: store.read("flaky")["state"] == "closed", 10, what="the trial call to close it"
        )
        output = worker.output()
        assert (
            "circuit breaker 'flaky' is open" in output
        )  # what Flower/the log shows for the deferral
    finally:
        worker.stop()


def test_exhausted_deferrals_end_in_service_unavailable(
    broker_env, redis_client, namespace, service, settings
):
    worker, producer, _ = start_worker(
        broker_env, BREAKER_OPEN_SECONDS="0.3", GUARD_MAX_DEFERRALS="2"
    )
    try:
        BreakerStore(redis_client, namespace).force("flaky", "open", policy_from_settings(settings))
        worker.wait_for_output("ready.", timeout=60)
        producer.send_task("tests.guarded_call", args=[service.url, "x"])
        try:
            worker.wait_for_output("ServiceUnavailableError", timeout=30)
        except AssertionError:
            print(worker.output()[-4000:])
            raise
        output = worker.output()
        assert "after 2 deferrals" in output
        assert service.hits == 0 and runs(redis_client, namespace) == []
    finally:
        worker.stop()


@pytest.fixture
def in_process(settings, redis_client):
    set_settings(settings)
    registry = BreakerRegistry(
        redis_client,
        settings.jenga_namespace,
        bp.BreakerPolicy(failure_threshold=2, failure_rate=0, open_seconds=30),
    )
    set_default_registry(registry)
    yield registry
    set_default_registry(None)
    guarded.close_limits()
    set_settings(None)


def test_guard_without_defer_raises_guard_refused(in_process, redis_client):
    class Boom(Exception):
        pass

    guarded_call.breaker_ignore = (Boom,)
    try:
        for _ in range(3):
            with pytest.raises(Boom), guarded_call.guard("svc", defer=False):
                raise Boom("ignored by the filter")
        in_process.flush()
        assert in_process.breaker("svc").state == "closed"
        with pytest.raises(ConnectionError), guarded_call.guard("svc", defer=False):
            raise ConnectionError("counts")
        with guarded_call.guard("svc", defer=False) as call:
            call.record(failed=False)  # an explicit record wins over "no exception"
        in_process.flush()
        # ConnectionError, success: not 2 *consecutive* failures (a failure is recorded at
        # once, so two in a row would already have tripped it)
        assert in_process.breaker("svc").state == "closed"
        for _ in range(2):
            with guarded_call.guard("svc", defer=False) as call:
                call.record(failed=True)  # e.g. HTTP 503
        in_process.flush()
        with pytest.raises(GuardRefused) as refused, guarded_call.guard("svc", defer=False):
            pytest.fail("must not run")
        assert refused.value.reason == "open" and refused.value.service == "svc"
        assert 0 < refused.value.retry_in <= 30
    finally:
        guarded_call.breaker_ignore = ()


def test_one_timed_out_call_weighs_as_many_failures(in_process):
    """``call.record(timed_out=True)`` counts ``timeout_weight`` (3) consecutive failures:
    one such call trips a threshold of 2; an ordinary failure does not."""
    with guarded_call.guard("slow", defer=False) as call:
        call.record(failed=True)
    in_process.flush()
    assert in_process.breaker("slow").state == "closed"
    with guarded_call.guard("slow", defer=False) as call:
        call.record(failed=False)
    with guarded_call.guard("slow", defer=False) as call:
        call.record(failed=True, timed_out=True)
    in_process.flush()
    assert in_process.breaker("slow").state == "open"
    assert in_process.breaker("slow").known.reason == "3 consecutive failures"
