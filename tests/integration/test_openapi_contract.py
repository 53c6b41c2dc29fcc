"""The OpenAPI document is the API (issue 13): Schemathesis generates requests for
every operation of ``/openapi.json``, valid and invalid ones, and sends them to the
live application (in process, real PostgreSQL and Redis, an admin key). Every
answer must be one the document promises: no 5xx, a documented status and content
type, a body that fits the documented schema.

``FUZZ_EXAMPLES`` sets the budget per operation (``make fuzz`` runs a large one).
Not here: Schemathesis' stateful runs (sequences through the links it infers), since
this database keeps its rows from one sequence to the next and Hypothesis then
refuses the runs as FlakyStrategyDefinition."""

from __future__ import annotations

import os
import string
import uuid

import psycopg
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from common.config import load_settings
from tests.support import servers
from tests.support.stack import migrate_database

TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Schemathesis needs the document when the module is collected, before any fixture:
# an application that is never started gives it (the live one is checked to serve
# the same). Nothing here connects to these.
UNUSED = {"DATABASE_URL": "postgresql://unused@127.0.0.1/unused", "REDIS_URL": "redis://127.0.0.1"}
schema = schemathesis.openapi.from_dict(create_app(load_settings(UNUSED, wait_seconds=0)).openapi())
# Webhook URLs (`format: uri`) the SSRF policy accepts without DNS, so that endpoints get
# created and the operations on them are reached; no worker delivers to them here.
# (Schemathesis' registry of formats is its own, used by nothing else.)
schemathesis.openapi.format(
    "uri",
    st.text(string.ascii_letters + string.digits + "-._~/", max_size=30).map(
        lambda path: f"http://93.184.216.34/{path}"
    ),
)


class StartedElsewhere:
    """The application without its lifespan: the fixture runs that (and ends it, so no
    monitor thread outlives the test), and Schemathesis' ASGI client would otherwise
    start its own and keep it to the end of the process."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


@pytest.fixture(scope="module")
def fuzz_database_url():
    """A database of its own: the fuzzer renames, deletes and revokes whatever ids it
    comes across, the default application's included."""
    base = servers.base_database_url()
    name = f"jenga_test_fuzz_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base.rpartition('/')[0]}/{name}"
    migrate_database(url)
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def live_app(settings_env, fuzz_database_url, redis_client):
    env = {
        **settings_env,
        "DATABASE_URL": fuzz_database_url,
        "JENGA_ADMIN_TOKEN": TOKEN,
        "API_RATE_LIMIT_PER_SECOND": "0",  # thousands of requests with one key
    }
    app = create_app(load_settings(env, wait_seconds=0))
    with TestClient(app) as client:
        assert client.get("/openapi.json").json() == schema.raw_schema
        yield StartedElsewhere(app)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # One live application per operation, shared by its examples on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_answer_is_documented(case, live_app):
    case.call_and_validate(app=live_app, headers=ADMIN, checks=CHECKS)
