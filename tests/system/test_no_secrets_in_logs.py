"""No secret in any log: the API, a worker, beat and Flower run at DEBUG level
with a database password, an admin token, a Slack URL and Flower credentials
configured, through a short realistic scenario: PostgreSQL unreachable (the
driver's connection errors), the watchdog opens an alarm and Slack is told, an
operator forces a breaker open with the admin token, bad requests, the status
page and metrics are read. Then ALL their output is searched for the secret
values. (This test is the place that exercises every process; the rest of the
suite is not grepped.)"""

from __future__ import annotations

import json
import tempfile
import uuid

import httpx
import pytest

from tests.support.fake_slack import FakeSlack
from tests.support.servers import JengaProcess, free_port, jenga_env, wait_for

pytestmark = pytest.mark.slow


def test_no_secret_reaches_any_process_output(settings_env, namespace, redis_client):
    db_password = f"dbpw-{uuid.uuid4().hex}"
    admin_token = f"admin-{uuid.uuid4().hex}"
    flower_password = f"flowerpw-{uuid.uuid4().hex[:12]}"
    slack = FakeSlack().start()
    api_port, flower_port, closed = free_port(), free_port(), free_port()
    env = dict(
        settings_env,
        # Nothing listens on the port: refused.
        DATABASE_URL=f"postgresql://jenga:{db_password}@127.0.0.1:{closed}/jenga",
        JENGA_ADMIN_TOKEN=admin_token,
        SLACK_WEBHOOK_URL=slack.url,
        FLOWER_BASIC_AUTH=f"ops:{flower_password}",
        FLOWER_PORT=str(flower_port),
        PORT=str(api_port),
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        WATCHDOG_INTERVAL_SECONDS="0.5",
        CHECK_INTERVAL_SECONDS="0.5",
        CHECK_TIMEOUT_SECONDS="0.5",
    )
    secrets = {
        "database password": db_password,
        "admin token": admin_token,
        "Slack URL": slack.url,
        "Slack URL path": slack.url.rsplit("/", 1)[1],
        "Flower password": flower_password,
    }
    ns = namespace
    schedule = tempfile.mkdtemp(prefix="jenga-beat-") + "/schedule"
    processes = {
        "worker": JengaProcess.celery(
            "worker",
            "-P",
            "threads",
            "-c",
            "2",
            "-Q",
            f"{ns}.default,{ns}.alarms",
            "--without-mingle",
            "--without-gossip",
            env=jenga_env(**env),
            name="worker",
        ),
        "beat": JengaProcess.celery("beat", "-s", schedule, env=jenga_env(**env), name="beat"),
        "api": JengaProcess.api(jenga_env(**env)),
        "flower": JengaProcess.celery(
            "flower", "--conf=worker/flowerconfig.py", env=jenga_env(**env), name="flower"
        ),
    }
    base = f"http://127.0.0.1:{api_port}"
    try:
        for process in processes.values():
            process.start()
        processes["worker"].wait_for_output("ready.", 60)
        wait_for(
            lambda: httpx.get(f"{base}/live", timeout=1).status_code == 200, 30, what="API /live"
        )

        # The watchdog finds PostgreSQL down, opens the alarm, and Slack is told (with the secret
        # URL).
        wait_for(
            lambda: any("postgres" in text.lower() for text in slack.texts()),
            60,
            what="Slack told about PostgreSQL",
        )

        headers = {"Authorization": f"Bearer {admin_token}"}
        assert (
            httpx.post(
                f"{base}/breakers/hooks.example/open", headers=headers, timeout=5
            ).status_code
            == 200
        )
        assert httpx.post(
            f"{base}/breakers/hooks.example/close",
            headers={"Authorization": "Bearer wrong-token-123456"},
            timeout=5,
        ).status_code in (401, 403)
        assert httpx.get(f"{base}/alarms?limit=nope", headers=headers, timeout=5).status_code == 422
        assert httpx.get(f"{base}/health", headers=headers, timeout=5).status_code == 503
        assert httpx.get(f"{base}/status", headers=headers, timeout=5).status_code == 200
        assert httpx.get(f"{base}/metrics", headers=headers, timeout=5).status_code == 200
        # Without the key the operator routes say nothing at all.
        refused = httpx.get(f"{base}/health", timeout=5)
        assert refused.status_code == 401 and "Connection refused" not in refused.text
        flower_base = f"http://127.0.0.1:{flower_port}"
        wait_for(
            lambda: (
                httpx.get(
                    f"{flower_base}/api/workers", auth=("ops", flower_password), timeout=2
                ).status_code
                == 200
            ),
            30,
            what="Flower API",
        )
        assert (
            httpx.get(f"{flower_base}/api/workers", auth=("ops", "wrong"), timeout=2).status_code
            == 401
        )
        # The health body carries the driver's error: masked too.
        body = httpx.get(f"{base}/health", headers=headers, timeout=5).text
        assert db_password not in body and "Connection refused" in body
    finally:
        for process in processes.values():
            process.stop()
        slack.stop()

    outputs = {name: process.output() for name, process in processes.items()}
    # The scenario really happened, in these very logs:
    assert '"dependency": "postgres"' in outputs["api"] and '"state": "down"' in outputs["api"]
    assert "alarm.set" in outputs["worker"] or "alarm.notified" in outputs["worker"]
    assert "jenga:***@" in outputs["api"] or "jenga:***@" in outputs["worker"]
    for name, text in outputs.items():
        assert text.strip(), f"{name} printed nothing"
        for what, value in secrets.items():
            assert value not in text, f"the {what} appears in the {name} output"
    # Every log line of the API is one JSON object (LOG_FORMAT=json).
    api_lines = [line for line in outputs["api"].splitlines() if line.strip()]
    assert api_lines and all(isinstance(json.loads(line), dict) for line in api_lines)
