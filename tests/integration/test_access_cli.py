"""``jenga keys`` and ``jenga apps`` work on PostgreSQL through the API's own rules:
a key made on the command line opens the API, a revoked one no longer does, and every
change (and a breaker forced with ``jenga breakers``) is audited as ``cli``."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from api.app import create_app
from api.auth import forget_cached_keys
from common.access.audit import AuditEntry
from common.config import load_settings
from common.ops.cli import main


@pytest.fixture
def cli_env(settings_env, migrated_database_url, redis_client, monkeypatch):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    return settings_env


@pytest.fixture
def api(cli_env):
    with TestClient(create_app(load_settings(cli_env, wait_seconds=0))) as client:
        yield client


def audit_of(database_url: str, target: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with Session(engine) as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.target == target).order_by(AuditEntry.id)
        ).all()
        found = [(row.principal, row.action) for row in rows]
    engine.dispose()
    return found


def test_apps_and_keys_from_the_command_line(cli_env, api, namespace, capsys):
    database_url = cli_env["DATABASE_URL"]
    uid = f"acme-{namespace}"
    assert main(["apps", "create", "Acme", "--uid", uid]) == 0
    app_id = capsys.readouterr().out.strip()
    assert app_id.startswith("app_")
    assert main(["apps", "create", "Again", "--uid", uid]) == 1
    assert "uid" in capsys.readouterr().err
    assert main(["apps", "list", "--json"]) == 0
    listed = {a["id"]: a for a in json.loads(capsys.readouterr().out)}
    assert listed[app_id]["uid"] == uid and listed[app_id]["name"] == "Acme"
    assert main(["apps", "list"]) == 0
    assert uid in capsys.readouterr().out

    # The key alone on stdout (KEY=$(jenga keys create ...)); the scope's app by uid.
    assert main(["keys", "create", "--scope", f"app:{uid}", "--name", "shop"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("jk_") and "shown only now" in err and key not in err
    assert api.get(f"/v1/apps/{uid}", headers={"Authorization": f"Bearer {key}"}).json()["id"] == (
        app_id
    )
    assert main(["keys", "list", "--json"]) == 0
    listing = capsys.readouterr().out
    assert key not in listing
    [row] = [k for k in json.loads(listing) if k["prefix"] == key[:11]]
    assert row["scopes"] == [f"app:{app_id}"] and row["name"] == "shop"
    assert row["revoked_at"] is None
    assert main(["keys", "list"]) == 0
    assert row["id"] in capsys.readouterr().out

    assert main(["keys", "revoke", row["id"]]) == 0
    assert "revoked" in capsys.readouterr().out
    forget_cached_keys()  # this process's API cached the key; other processes drop it in 5 s
    assert api.get(f"/v1/apps/{uid}", headers={"Authorization": f"Bearer {key}"}).status_code == (
        401
    )
    assert main(["keys", "revoke", "key_nothing"]) == 1
    assert "no key 'key_nothing'" in capsys.readouterr().err

    assert audit_of(database_url, app_id) == [("cli", "app.created")]
    assert audit_of(database_url, row["id"]) == [("cli", "key.created"), ("cli", "key.revoked")]


def test_a_bad_scope_is_a_usage_error(cli_env, capsys):
    assert main(["keys", "create", "--scope", "app:no-such-app"]) == 2
    assert "no application 'no-such-app'" in capsys.readouterr().err
    assert main(["keys", "create", "--scope", "root"]) == 2
    assert "unknown scope 'root'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["keys", "create"])  # --scope is required


def test_a_forced_breaker_is_audited_as_cli(cli_env, namespace, capsys):
    name = f"svc-{namespace}"
    assert main(["breakers", "open", name]) == 0
    assert audit_of(cli_env["DATABASE_URL"], name) == [("cli", "breaker.forced")]


def test_unreachable_or_unmigrated_postgres_is_one_clear_line(
    settings_env, monkeypatch, capsys, postgres_server
):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", postgres_server.url)  # a fresh server: no tables
    assert main(["keys", "list"]) == 1
    err = capsys.readouterr().err
    assert "alembic upgrade head" in err and "Traceback" not in err
    monkeypatch.setenv("DATABASE_URL", "postgresql://jenga:hunter2@127.0.0.1:1/jenga")
    monkeypatch.setenv("CHECK_TIMEOUT_SECONDS", "0.5")
    assert main(["apps", "list"]) == 1
    err = capsys.readouterr().err
    assert "PostgreSQL is unreachable" in err and "DATABASE_URL" in err
    assert "hunter2" not in err and "Traceback" not in err
