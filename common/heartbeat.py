"""Level 2 for workers: a heartbeat instead of ``celery inspect ping``.

A worker writes its heartbeat every ``HEARTBEAT_INTERVAL_SECONDS`` from a
thread of its main process (so a pool whose every slot is busy still beats):
a JSON file ``{HEARTBEAT_DIR}/{hostname}.json`` and the Redis key
``{ns}:worker:{hostname}:heartbeat`` (TTL three intervals). The file is what
probes read: it needs no broker and no Redis, so a Redis outage never gets a
healthy worker restarted. The key lets other processes see the fleet.

:func:`verdict` is the pure rule `jenga worker health` applies:

* live: the heartbeat is younger than ``STALE_AFTER_INTERVALS`` intervals;
* ready: live, and the worker's consumer is connected to the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.keys import RedisKeys

STALE_AFTER_INTERVALS = 3


def default_hostname() -> str:
    """Celery's default node name, ``celery@<host>``."""
    return f"celery@{socket.gethostname()}"


def heartbeat_key(namespace: str, hostname: str) -> str:
    return RedisKeys(namespace).key("worker", hostname, "heartbeat")


def heartbeat_path(directory: str | os.PathLike, hostname: str) -> Path:
    safe = hostname.replace("/", "_")
    return Path(directory) / f"{safe}.json"


def write_heartbeat_file(directory: str | os.PathLike, hostname: str, payload: dict[str, Any]) -> Path:
    """Write atomically, so a probe never reads half a file."""
    path = heartbeat_path(directory, hostname)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hb-")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(payload, file)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def read_heartbeat_file(directory: str | os.PathLike, hostname: str) -> dict[str, Any] | None:
    try:
        return json.loads(heartbeat_path(directory, hostname).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or torn: treated as no valid heartbeat


def remove_heartbeat_file(directory: str | os.PathLike, hostname: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        heartbeat_path(directory, hostname).unlink()


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def verdict(payload: dict[str, Any] | None, now: float, interval: float, *, live_only: bool = False) -> Verdict:
    """Whether a worker is live (``live_only``) or ready, from its last heartbeat."""
    if payload is None:
        return Verdict(False, "no heartbeat file: the worker has not started, or has stopped")
    beat_at = payload.get("time")
    if not isinstance(beat_at, int | float):
        return Verdict(False, "heartbeat file is unreadable")
    age = now - beat_at
    if age > STALE_AFTER_INTERVALS * interval:
        return Verdict(False, f"heartbeat is stale: last beat {age:.1f}s ago (limit {STALE_AFTER_INTERVALS * interval:.1f}s)")
    if live_only:
        return Verdict(True, f"live: last beat {age:.1f}s ago")
    if not payload.get("consumer_connected"):
        return Verdict(False, "not ready: not connected to the broker (retrying)")
    return Verdict(True, f"ready: connected to the broker, last beat {age:.1f}s ago")


def beat_payload(hostname: str, interval: float, consumer_connected: bool,
                 dependencies: dict[str, str], now: float | None = None) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "pid": os.getpid(),
        "time": time.time() if now is None else now,
        "interval": interval,
        "consumer_connected": consumer_connected,
        "dependencies": dependencies,
    }
