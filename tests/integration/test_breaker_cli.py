"""``jenga breakers``: list, force, and a clear message when Redis is unreachable."""

from __future__ import annotations

import json

from common.guards.breaker.store import BreakerStore
from common.ops.cli import main


def test_list_and_force(settings_env, redis_client, namespace, monkeypatch, capsys):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    assert main(["breakers", "open", "slack"]) == 0
    assert "breaker slack: open" in capsys.readouterr().out
    assert BreakerStore(redis_client, namespace).read("slack")["forced"] is True
    assert main(["breakers"]) == 0
    out = capsys.readouterr().out
    assert "slack" in out and "open (forced)" in out
    assert main(["breakers", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in view["breakers"]] == ["slack"] and view["fallback"] is False
    assert main(["breakers", "reset", "slack"]) == 0
    assert BreakerStore(redis_client, namespace).read("slack")["state"] == "closed"
    assert main(["breakers", "close"]) == 2
    assert "say which breaker" in capsys.readouterr().err
    # A misspelt name is refused (as the API's 404), not created as a new breaker.
    assert main(["breakers", "close", "slak"]) == 1
    assert "no breaker named 'slak'" in capsys.readouterr().err
    assert main(["breakers", "reset", "slak"]) == 1
    assert BreakerStore(redis_client, namespace).names() == ["slack"]
    # The API's name rule: no spaces or braces in a key an operator creates.
    assert main(["breakers", "open", "my service"]) == 2
    assert "invalid breaker name" in capsys.readouterr().err
    assert BreakerStore(redis_client, namespace).names() == ["slack"]


def test_unreachable_redis_is_one_clear_line(settings_env, monkeypatch, capsys):
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    monkeypatch.setenv("CHECK_TIMEOUT_SECONDS", "0.3")
    assert main(["breakers"]) == 1
    err = capsys.readouterr().err
    assert "Redis is unreachable" in err and "fallback" in err
    assert "hunter2" not in err and "Traceback" not in err
