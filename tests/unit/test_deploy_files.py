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
    assert set(entries) == {"release", "web", "worker", "ops", "beat", "flower"}
    assert entries["worker"].startswith("celery -A worker worker")
    assert entries["ops"].startswith("celery -A worker worker")
    assert entries["beat"].startswith("celery -A worker beat")
    assert entries["flower"].startswith("celery -A worker flower")
    assert "alembic upgrade head" in entries["release"]


def test_deliveries_and_operations_run_in_separate_worker_processes():
    """The bulkhead: no delivery backlog can delay a watchdog, the dispatcher or an alarm."""
    queues = {
        name: set(command.split(" -Q ", 1)[1].split()[0].split(","))
        for name, command in procfile().items()
        if name in ("worker", "ops")
    }
    ns = "${JENGA_NAMESPACE:-jenga}"
    assert queues == {
        "worker": {f"{ns}.deliveries", f"{ns}.operational"},
        "ops": {f"{ns}.default", f"{ns}.alarms"},
    }
    assert " -n ops@%h" in procfile()["ops"]  # its own node name, heartbeat and pidbox


def test_deliveries_run_on_threads_and_operations_on_processes():
    """A receiver that trickles until the deadline holds a thread of the deliveries
    worker, not a process; the ops worker keeps prefork for Celery's time limits."""
    worker, ops = procfile()["worker"].split(), procfile()["ops"].split()
    assert worker[worker.index("-P") + 1] == "threads"
    assert "--concurrency=${WORKER_CONCURRENCY:-64}" in worker
    assert "-P" not in ops


@pytest.fixture(scope="module")
def compose() -> dict:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose (Debian package) is not installed")
    result = subprocess.run(
        ["docker-compose", "-f", "compose.yaml", "config"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_is_valid_and_has_the_stack(compose):
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "ops", "beat", "flower"} <= set(services)
    assert "/up" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("postgres", "redis", "web", "worker", "ops", "flower"):
        assert "healthcheck" in services[name], name


def test_compose_commands_are_the_procfile_commands(compose):
    entries = procfile()
    for name in ("web", "beat", "flower", "release"):
        assert compose["services"][name]["command"] == shlex.split(entries[name]), name
    for name in ("worker", "ops"):
        assert compose["services"][name]["command"][:4] == ["celery", "-A", "worker", "worker"]
