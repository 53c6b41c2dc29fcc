"""The brokers a user may bring, for tests that run a real worker.

``broker`` (a fixture in ``tests/conftest.py``) is parametrized over
:data:`BROKERS`: every end-to-end test that requests it runs once on Redis and
once on RabbitMQ. A broker that is not running is skipped with the reason,
never silently passed. RabbitMQ keeps queues after the test, so each test's
queues are deleted at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from kombu import Connection

from common.broker import QUEUE_ROLES
from tests.support.servers import port_open

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass(frozen=True)
class Broker:
    """One broker of the parametrization: ``url`` is None for Redis (``BROKER_URL``
    unset, so it defaults to ``REDIS_URL``, as in a newcomer's setup)."""

    name: str
    url: str | None

    def env(self, settings_env: dict[str, str]) -> dict[str, str]:
        """``settings_env`` pointed at this broker."""
        return {**settings_env, "BROKER_URL": self.url} if self.url else dict(settings_env)

    def skip_reason(self) -> str | None:
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        if not port_open(parts.hostname or "127.0.0.1", parts.port or 5672):
            return (
                f"RabbitMQ is not running at {parts.hostname}:{parts.port or 5672}"
                " (TEST_RABBITMQ_URL)"
            )
        return None

    def delete_queues(self, namespace: str) -> None:
        """Drop this namespace's queues from RabbitMQ (Redis keys go with the namespace)."""
        if self.url is None:
            return
        with Connection(self.url, connect_timeout=5) as conn:
            for role in QUEUE_ROLES:
                with contextlib.suppress(Exception):
                    conn.default_channel.queue_delete(f"{namespace}.{role}")


BROKERS = [Broker("redis", None), Broker("rabbitmq", RABBITMQ_URL)]


def waiting(broker_url: str, queue: str, transport_options: dict | None = None) -> int:
    """Messages ready in ``queue`` (not delivered to a consumer), on either broker."""
    # Passive on AMQP: a plain declare would conflict with Celery's queue
    # arguments. Kombu's Redis transport refuses a passive declare of an empty
    # (absent) list, and its plain declare creates nothing.
    passive = not broker_url.startswith(("redis", "rediss"))
    with Connection(
        broker_url, transport_options=transport_options or {}, connect_timeout=5
    ) as conn:
        return conn.default_channel.queue_declare(queue, passive=passive).message_count


def consumers(amqp_url: str, queue: str) -> int:
    """Consumers of ``queue`` on RabbitMQ (a passive declare: it never creates the queue)."""
    with Connection(amqp_url, connect_timeout=5) as conn:
        return conn.default_channel.queue_declare(queue, passive=True).consumer_count


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """``rabbitmqctl args`` on this machine's RabbitMQ node; its output."""
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def vhost_skip_reason() -> str | None:
    """Why a test cannot have a RabbitMQ vhost of its own here, or None."""
    rabbitmq = next(broker for broker in BROKERS if broker.name == "rabbitmq")
    if reason := rabbitmq.skip_reason():
        return reason
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed (a vhost of the test's own needs it)"
    return None


@contextlib.contextmanager
def rabbitmq_vhost(prefix: str = "jenga-test") -> Iterator[str]:
    """A vhost of the test's own on the test RabbitMQ, ``guest`` allowed, deleted
    afterwards with everything in it; yields its ``amqp://`` URL. For tests whose
    declarations are vhost-wide (quorum queues' native delayed delivery declares
    ``celery_delayed_*`` exchanges and queues for everyone on the vhost)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        parts = urlsplit(RABBITMQ_URL)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + quote(name, safe=""), "", ""))
    finally:
        with contextlib.suppress(Exception):
            rabbitmqctl("delete_vhost", name)


def queue_types(vhost: str) -> dict[str, str]:
    """Each queue of ``vhost`` and its type (``classic``, ``quorum``...)."""
    out = rabbitmqctl("list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "type")
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
