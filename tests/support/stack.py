"""A running Jenga stack for tests and benchmarks: a fresh migrated database,
the environment of a stack, and the API, worker and beat as real processes
(stopped, with their output shown on failure, when the block ends)."""

from __future__ import annotations

import os
import tempfile
import uuid
from contextlib import ExitStack, contextmanager

import httpx
import psycopg

from tests.support.receiver import WebhookReceiver
from tests.support.servers import (
    ROOT,
    JengaProcess,
    base_database_url,
    free_port,
    jenga_env,
    wait_for,
)


def migrate_database(url: str) -> None:
    """``alembic upgrade head`` on the database at ``url`` (as the release process does)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"), attributes={"configure_logging": False})
    scheme, rest = url.split("://", 1)
    config.set_main_option("sqlalchemy.url", f"postgresql+psycopg://{rest}".replace("%", "%%"))
    command.upgrade(config, "head")


def durable_url(server) -> str:
    """The throwaway server runs with synchronous_commit=off (command line, so
    ALTER SYSTEM cannot change it), which loses the last commits on SIGKILL. A
    test of "never lost" needs commits that last: turn it on per session."""
    return server.url + "?options=-csynchronous_commit%3Don"


TOKEN = "e2e-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def fresh_database():
    """A database of its own, migrated: the dispatcher of this test must not
    see other tests' pending messages."""
    base = base_database_url()
    name = f"jenga_wh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base.rpartition('/')[0]}/{name}"
    try:
        migrate_database(url)
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stack_env(settings_env: dict[str, str], database_url: str, **extra: str) -> dict[str, str]:
    return jenga_env(
        **{
            **settings_env,
            "DATABASE_URL": database_url,
            "JENGA_ADMIN_TOKEN": TOKEN,
            "ALLOW_PRIVATE_DESTINATIONS": "true",
            "PORT": str(free_port()),
            "DELIVERY_RETRY_SCHEDULE": "200ms,300ms",
            "DELIVERY_RETRY_JITTER": "0",
            "DELIVERY_DISPATCH_INTERVAL_SECONDS": "0.3",
            # Stacks post thousands of messages with one token to measure delivery, not fair use.
            "API_RATE_LIMIT_PER_SECOND": "0",
            **extra,
        }
    )


def start_api(stack: ExitStack, env: dict[str, str]) -> httpx.Client:
    api = stack.enter_context(running(JengaProcess.api(env)))
    client = stack.enter_context(
        httpx.Client(base_url=f"http://127.0.0.1:{env['PORT']}", timeout=10)
    )
    wait_for(lambda: api.alive() and client.get("/live").status_code == 200, 30, what="the API")
    return client


def start_worker(
    stack: ExitStack,
    env: dict[str, str],
    name: str = "worker",
    concurrency: int = 4,
    *extra_args: str,
) -> JengaProcess:
    ns = env["JENGA_NAMESPACE"]
    worker = stack.enter_context(
        running(
            JengaProcess.celery(
                "worker",
                "-P",
                "threads",
                "-c",
                str(concurrency),
                "-Q",
                f"{ns}.default,{ns}.deliveries,{ns}.operational",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
                "-n",
                f"{name}-{ns}@%h",
                *extra_args,
                env=env,
                name=name,
            )
        )
    )
    worker.wait_for_output("ready.", timeout=60)
    return worker


def start_beat(stack: ExitStack, env: dict[str, str]) -> JengaProcess:
    schedule = os.path.join(tempfile.mkdtemp(prefix="jenga-beat-"), "schedule")
    return stack.enter_context(
        running(
            JengaProcess.celery("beat", "-s", schedule, "--loglevel=INFO", env=env, name="beat")
        )
    )


@contextmanager
def running(process: JengaProcess):
    process.start()
    try:
        yield process
    except BaseException:
        print(f"--- {process.args[-1]} output (tail) ---\n{process.output()[-4000:]}")
        raise
    finally:
        process.stop()


def create_endpoint(client: httpx.Client, receiver: WebhookReceiver, path: str = "") -> dict:
    response = client.post("/v1/endpoints", json={"url": receiver.url + path}, headers=AUTH)
    assert response.status_code == 201, response.text
    endpoint = response.json()
    receiver.add_secret(endpoint["secret"])
    return endpoint


def send(client: httpx.Client, endpoint_id: str, payload, key: str | None = None) -> dict:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    response = client.post(
        "/v1/messages",
        json={"endpoint_id": endpoint_id, "event_type": "test.event", "payload": payload},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    return response.json()


def message(client: httpx.Client, message_id: str) -> dict:
    return client.get(f"/v1/messages/{message_id}", headers=AUTH).json()


def settled(client: httpx.Client, message_id: str, status: str = "delivered") -> dict:
    def done():
        shown = message(client, message_id)
        return shown if shown["status"] == status else None

    return wait_for(done, 60, interval=0.1, what=f"message {message_id} {status}")
