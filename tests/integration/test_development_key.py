"""``jenga run`` with nothing configured makes one development admin key, keeps it in
``.jenga/admin.key`` (0600) and reuses it while the database accepts it."""

from __future__ import annotations

import json
import stat

from fastapi.testclient import TestClient

from api.app import create_app
from common.config import load_settings
from common.ops.cli import main
from common.ops.localstack import announce_admin_access, development_key


def test_made_once_kept_private_and_reused(settings, migrated_database_url, redis_client, tmp_path):
    path = tmp_path / "admin.key"
    key = development_key(settings, path)
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert development_key(settings, path) == key  # the next start
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/keys", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        [row] = [k for k in answer.json()["data"] if k["prefix"] == key[:11]]
        assert row["scopes"] == ["admin"] and "jenga run" in row["name"]


def test_a_key_this_database_no_longer_accepts_is_replaced(
    settings_env, migrated_database_url, monkeypatch, tmp_path, capsys
):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(settings_env, wait_seconds=0)
    path = tmp_path / "admin.key"
    path.write_text("jk_" + "x" * 43 + "\n")  # another database's (.jenga/postgres wiped)
    path.chmod(0o644)
    key = development_key(settings, path)
    assert key != "jk_" + "x" * 43 and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["keys", "list", "--json"]) == 0
    [row] = [k for k in json.loads(capsys.readouterr().out) if k["prefix"] == key[:11]]
    assert main(["keys", "revoke", row["id"]]) == 0
    assert development_key(settings, path) != key


def test_the_announcement_says_how_to_use_it(settings, migrated_database_url, tmp_path, capsys):
    path = tmp_path / "admin.key"
    announce_admin_access(settings, path)
    out = capsys.readouterr().out
    assert f"export KEY=$(cat {path})" in out
    assert 'curl -H "Authorization: Bearer $KEY" http://127.0.0.1:' in out
    assert path.read_text().strip() not in out  # the key itself stays in the file


def test_no_development_key_when_an_admin_token_is_set(settings_env, tmp_path, capsys):
    settings = load_settings(
        {**settings_env, "JENGA_ADMIN_TOKEN": "a-token-of-my-own-0123"}, wait_seconds=0
    )
    announce_admin_access(settings, tmp_path / "admin.key")
    assert not (tmp_path / "admin.key").exists()
    assert "$JENGA_ADMIN_TOKEN" in capsys.readouterr().out
