"""``GET /status``'s delivery view against real PostgreSQL: a failing, a paused and a
disabled endpoint beside a healthy one are counted each in its state, an old due
delivery turns the backlog red (a paused one and a later retry are not backlog), the
page names no endpoint; and with PostgreSQL unreachable the page still answers 200,
the backlog ``unknown``."""

from __future__ import annotations

import re
from contextlib import contextmanager
from types import SimpleNamespace

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.status_delivery import backlog_level, read_overview
from common.config import load_settings
from common.connections.database import make_engine
from tests.support.api import ADMIN, TOKEN
from tests.support.message_rows import insert_delivery, insert_endpoint
from tests.support.servers import free_port
from tests.support.stack import fresh_database

pytestmark = pytest.mark.slow


@contextmanager
def status_client(settings_env, database_url: str):
    env = {**settings_env, "DATABASE_URL": database_url, "JENGA_ADMIN_TOKEN": TOKEN}
    settings = load_settings(env, wait_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def level(page: str, name: str) -> tuple[str, str]:
    """The colour and the summary of level ``name`` in the page."""
    found = re.search(
        rf'<tr data-level="{name}" data-color="(\w+)">.*?<td>([^<]*)</td>\s*</tr>', page, re.S
    )
    assert found, f"no level {name}"
    return found.group(1), found.group(2).strip()


def states(page: str) -> dict[str, int]:
    found = re.findall(r'data-state="(\w+)" data-count="(\d+)"', page)
    return {state: int(count) for state, count in found}


def test_endpoints_by_state_and_an_old_due_delivery(settings_env, redis_client):
    with fresh_database() as url, psycopg.connect(url, autocommit=True) as conn:
        endpoints = {state: insert_endpoint(conn) for state in ("healthy", "failing", "paused")}
        endpoints["disabled"] = insert_endpoint(conn)
        conn.execute(
            "UPDATE webhook_endpoints SET failing_since = now() - interval '1 hour' WHERE id = %s",
            (endpoints["failing"],),
        )
        conn.execute(
            "UPDATE webhook_endpoints SET paused_at = now() WHERE id = %s", (endpoints["paused"],)
        )
        conn.execute(  # disabled automatically: failing too, counted once, as disabled
            "UPDATE webhook_endpoints SET disabled = true, failing_since = now() WHERE id = %s",
            (endpoints["disabled"],),
        )
        old = insert_delivery(conn, endpoints["failing"])
        conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '15 minutes'"
            " WHERE id = %s",
            (old,),
        )
        insert_delivery(conn, endpoints["healthy"])  # due now
        waiting = insert_delivery(conn, endpoints["paused"])
        conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = NULL WHERE id = %s", (waiting,)
        )
        retry = insert_delivery(conn, endpoints["healthy"])
        conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour'"
            " WHERE id = %s",
            (retry,),
        )
        insert_delivery(conn, endpoints["healthy"], status="delivered")

        with status_client(settings_env, url) as client:
            response = client.get("/status", headers=ADMIN)
    assert response.status_code == 200
    page = response.text
    assert states(page) == {"healthy": 1, "failing": 1, "paused": 1, "disabled": 1}
    color, summary = level(page, "backlog")
    assert color == "red"
    assert re.fullmatch(r"2 due now, the oldest waiting 1[56] min", summary), summary
    assert 'data-chart="backlog" data-due="2"' in page
    assert page.count('<rect x="') == 4 + 1  # a segment per state, and the gauge's fill
    assert not [ep for ep in endpoints.values() if ep in page]  # counts, never an endpoint
    assert "hooks.test" not in page


def test_with_postgres_unreachable_the_page_answers_and_the_backlog_is_unknown(
    settings_env, redis_client
):
    unreachable = f"postgresql://jenga:jenga@127.0.0.1:{free_port()}/jenga"
    with status_client(settings_env, unreachable) as client:
        response = client.get("/status", headers=ADMIN)
    assert response.status_code == 200
    color, summary = level(response.text, "backlog")
    assert color == "red" and summary.startswith("unknown: "), summary
    assert 'id="delivery-unknown"' in response.text
    assert 'data-chart="endpoints"' not in response.text


def test_a_failed_read_is_unknown_with_the_reason_not_an_error(settings_env):
    """Before the monitor has seen PostgreSQL down, the read itself fails, bounded by the
    connect timeout, and says why."""
    unreachable = f"postgresql://jenga:jenga@127.0.0.1:{free_port()}/jenga"
    settings = load_settings({**settings_env, "DATABASE_URL": unreachable}, wait_seconds=0)
    engine = make_engine(settings)
    app = SimpleNamespace(state=SimpleNamespace(settings=settings, read_engine=engine))
    try:
        overview, error = read_overview(app)
    finally:
        engine.dispose()
    assert overview is None and error.startswith("OperationalError: ")
    assert backlog_level(overview, error).summary.startswith("unknown: OperationalError")
