"""Deploy files: compose.yaml is valid and its services run our real commands;
the Procfile has every process the design names."""

import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.support.servers import ROOT


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def test_procfile_has_every_process():
    entries = procfile()
    assert set(entries) == {"release", "web", "worker", "beat", "flower"}
    assert entries["worker"].startswith("celery -A worker worker")
    assert entries["beat"].startswith("celery -A worker beat")
    assert entries["flower"].startswith("celery -A worker flower")
    assert "alembic upgrade head" in entries["release"]


@pytest.fixture(scope="module")
def compose() -> dict:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (Debian package) is not installed")
    result = subprocess.run(["docker-compose", "-f", "compose.yaml", "config"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_is_valid_and_has_the_stack(compose):
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "flower"} <= set(services)
    assert "/up" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "web", "worker", "flower"):
        assert "healthcheck" in services[name], name


def test_compose_commands_are_the_procfile_commands(compose):
    entries = procfile()
    for name in ("web", "beat", "flower", "release"):
        assert compose["services"][name]["command"] == shlex.split(entries[name]), name
    assert compose["services"]["worker"]["command"][:4] == ["celery", "-A", "worker", "worker"]
