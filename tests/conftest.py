"""Fixtures over real servers. Each test gets its own ``JENGA_NAMESPACE`` (so
Redis keys and queues never collide with a parallel run) and each session its
own PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import psycopg
import pytest

from common.config import Settings, load_settings
from common.redis.keys import RedisKeys
from common.support.per_process import reset_all
from tests.support import servers
from tests.support.brokers import BROKERS, Broker
from tests.support.fake_slack import FakeSlack
from tests.support.stack import migrate_database


@pytest.fixture(scope="session")
def redis_url() -> str:
    return servers.base_redis_url()


@pytest.fixture(scope="session")
def database_url():
    """A fresh database for this test session on the shared PostgreSQL server."""
    base = servers.base_database_url()
    name = f"jenga_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    prefix, _, _ = base.rpartition("/")
    yield f"{prefix}/{name}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_database_url(database_url) -> str:
    """The session database with the webhook tables (Alembic ``upgrade head``)."""
    migrate_database(database_url)
    return database_url


@pytest.fixture(scope="session", autouse=True)
def _scratch_folder():
    """Every temporary file of the run (process logs, beat schedules, throwaway
    server data) in one folder, removed at the end: subprocesses inherit it as
    TMPDIR. World-readable, since throwaway PostgreSQL runs as `postgres`."""
    folder = tempfile.mkdtemp(prefix="jenga-tests-")
    os.chmod(folder, 0o755)
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    yield folder
    tempfile.tempdir = saved_tempdir
    if saved_env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved_env
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_servers(_scratch_folder):
    yield
    servers.stop_embedded()


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """Every test starts with no process-wide state (settings, registries,
    hooks) left by another: one reset for all of it."""
    reset_all()
    yield
    reset_all()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings_env(redis_url, database_url, namespace) -> dict[str, str]:
    """Environment of a valid configuration pointing at the shared test servers."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JENGA_NAMESPACE": namespace,
        "CONFIG_WAIT_SECONDS": "0",
        "RECONNECT_BASE_SECONDS": "0.1",
        "RECONNECT_CAP_SECONDS": "1",
    }


@pytest.fixture(params=BROKERS, ids=lambda b: b.name)
def broker(request, namespace) -> Broker:
    """Each broker a user may bring (Redis, RabbitMQ); a test that runs a real
    worker takes this and runs once on each. One that is not running is skipped."""
    chosen: Broker = request.param
    reason = chosen.skip_reason()
    if reason:
        pytest.skip(reason)
    yield chosen
    chosen.delete_queues(namespace)


@pytest.fixture
def broker_env(settings_env, broker) -> dict[str, str]:
    """``settings_env`` on the parametrized broker."""
    return broker.env(settings_env)


@pytest.fixture
def settings(settings_env) -> Settings:
    return load_settings(settings_env, wait_seconds=0)


@pytest.fixture
def redis_client(settings):
    import redis

    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    keys = RedisKeys(settings.jenga_namespace)
    # Shared state, then the broker's keys and those tests make for themselves (ns:...).
    for pattern in (keys.pattern(), f"{settings.jenga_namespace}:*"):
        found = list(client.scan_iter(pattern, count=500))
        if found:
            client.delete(*found)
    client.close()


@pytest.fixture
def redis_server():
    """A throwaway Redis on a free port that the test may kill and restart."""
    server = servers.RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def sentinel_group():
    """A primary, a replica and three Sentinels on free ports that the test may fail over."""
    from tests.support.sentinel import SentinelGroup

    with SentinelGroup() as group:
        yield group


@pytest.fixture
def postgres_server():
    """A throwaway PostgreSQL on a free port that the test may kill and restart."""
    server = servers.PostgresServer().start()
    yield server
    server.close()


@pytest.fixture
def slack() -> FakeSlack:
    """A local Slack incoming webhook that answers 200 ``ok`` unless the test
    scripts other answers (``slack.script``); stopped after the test."""
    fake = FakeSlack().start()
    yield fake
    fake.stop()
