"""Flower as the Procfile starts it: basic auth from ``FLOWER_BASIC_AUTH`` on the
dashboard, its API and its own ``/metrics``; Jenga tasks listed by their
readable names; a task deferred by an open breaker shows as RETRY with
``GuardRefused``, an ordinary failure as FAILURE."""

from __future__ import annotations

import httpx
import pytest
from celery import Celery

from common.guards.breaker.registry import policy_from_settings
from common.guards.breaker.store import BreakerStore
from common.redis.keys import RedisKeys
from tests.support.servers import JengaProcess, free_port, jenga_env, wait_for

pytestmark = pytest.mark.slow

AUTH = ("ops", "flower-pass-1234")


def test_flower_auth_metrics_and_task_states(settings, settings_env, namespace, redis_client):
    port = free_port()
    env = jenga_env(
        **settings_env,
        FLOWER_BASIC_AUTH=":".join(AUTH),
        FLOWER_PORT=str(port),
        GUARD_MAX_COUNTDOWN_SECONDS="1",
    )
    BreakerStore(redis_client, namespace).force(
        "flower-svc", "open", policy_from_settings(settings)
    )
    worker = JengaProcess.celery(
        "worker",
        "-P",
        "threads",
        "-c",
        "2",
        "-Q",
        f"{namespace}.default",
        "-I",
        "tests.support.flower_tasks",
        "-n",
        f"flower-{namespace}@%h",
        env=env,
        name="worker-flower",
    ).start()
    flower = JengaProcess.celery(
        "flower", "--conf=worker/flowerconfig.py", env=env, name="flower"
    ).start()
    base = f"http://127.0.0.1:{port}"
    sender = Celery("t", broker=settings.redis_url, set_as_current=False)
    sender.conf.broker_transport_options = {
        "global_keyprefix": RedisKeys(namespace).broker_prefix()
    }
    try:
        worker.wait_for_output("ready", 60)
        wait_for(
            lambda: httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200,
            60,
            what="Flower up",
        )

        for path in ("/", "/tasks", "/api/tasks", "/api/workers"):
            assert httpx.get(base + path, timeout=5).status_code == 401, path
            assert httpx.get(base + path, auth=("ops", "wrong"), timeout=5).status_code == 401, path
        assert httpx.get(f"{base}/", auth=AUTH, timeout=5).status_code == 200
        # Flower serves its own /metrics without auth (Prometheus scrapes it as is):
        # it stays available with basic auth on; keep the port off the public network.
        response = httpx.get(f"{base}/metrics", auth=AUTH, timeout=5)
        assert response.status_code == 200 and "flower_" in response.text
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200

        queue = f"{namespace}.default"

        def tasks() -> dict:
            return httpx.get(f"{base}/api/tasks", auth=AUTH, timeout=5).json()

        # Flower subscribes to task events a moment after it answers HTTP; events
        # sent before that are gone (pub/sub), so probe until one is seen.
        def flower_listens() -> bool:
            sender.send_task("jenga.selftest", args=["warm-up"], queue=queue)
            return any(t.get("state") == "SUCCESS" for t in tasks().values())

        wait_for(flower_listens, 60, interval=1.0, what="Flower receiving task events")
        ids = {
            "selftest": sender.send_task("jenga.selftest", args=["flower"], queue=queue).id,
            "guarded": sender.send_task("tests.flower.guarded", queue=queue).id,
            "broken": sender.send_task("tests.flower.broken", queue=queue).id,
        }

        def seen() -> bool:
            t = tasks()
            return (
                t.get(ids["selftest"], {}).get("state") == "SUCCESS"
                and t.get(ids["broken"], {}).get("state") == "FAILURE"
                and t.get(ids["guarded"], {}).get("state") in ("RETRY", "FAILURE")
            )

        wait_for(seen, 60, interval=0.5, what="task states in Flower")
        t = tasks()
        assert t[ids["selftest"]]["name"] == "jenga.selftest"
        assert t[ids["broken"]]["name"] == "tests.flower.broken"
        assert "ValueError" in t[ids["broken"]]["exception"]
        # Deferred by the breaker: a RETRY that names the refusal, never confused with a bug.
        wait_for(
            lambda: (
                "GuardRefused" in str(tasks()[ids["guarded"]].get("exception"))
                or tasks()[ids["guarded"]]["state"] == "FAILURE"
            ),
            30,
            what="deferral in Flower",
        )
        guarded = tasks()[ids["guarded"]]
        assert guarded["name"] == "tests.flower.guarded"
        # RETRY names the refusal; once the deferrals are used up the terminal error
        # names it too. Flower merges events as they arrive, so a FAILURE state may
        # still show the last retry's exception: either one must name the breaker.
        assert "flower-svc" in guarded["exception"]
        assert "GuardRefused" in guarded["exception"] or (
            guarded["state"] == "FAILURE" and "ServiceUnavailableError" in guarded["exception"]
        )
        assert "GuardRefused" not in t[ids["broken"]]["exception"]
        for text in (flower.output(), worker.output()):
            assert AUTH[1] not in text
    finally:
        sender.close()
        flower.stop()
        worker.stop()
