"""Level 2 for workers: a heartbeat instead of ``celery inspect ping``.

A worker writes its heartbeat every ``HEARTBEAT_INTERVAL_SECONDS`` from a
thread of its main process (so a pool whose every slot is busy still beats):
a JSON file ``{HEARTBEAT_DIR}/{hostname}.json`` and the Redis key
``{ns}:worker:{hostname}:heartbeat`` (TTL three intervals), listed in the index
``{ns}:workers`` (:func:`publish_heartbeat`, :func:`read_heartbeats`: a read is two
commands however many keys Redis holds, where a ``SCAN`` walked them all). The file is
what probes read: it needs no broker and no Redis, so a Redis outage never gets a
healthy worker restarted. The key lets other processes see the fleet.

:func:`verdict` is the pure rule `jenga worker health` applies:

* live: the heartbeat is younger than ``STALE_AFTER_INTERVALS`` intervals;
* ready: live, and the worker's consumer is connected to the broker.

Breaker fallback. A worker process whose circuit breakers lost Redis runs them
per process (:mod:`common.guards.breaker.registry`). The breakers live in the pool
processes, the heartbeat in the main one, and Redis is the thing that is down,
so each process that falls back leaves a marker file
``{HEARTBEAT_DIR}/{hostname}.breakers/{pid}.json`` and removes it when Redis
answers again; the heartbeat reports the markers of live processes as
``breakers: {"fallback", "processes", "error"}``. Fallback is degraded, not
unready: the verdict stays as it was and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from common.redis.keys import RedisKeys

STALE_AFTER_INTERVALS = 3
# A worker that died without saying so leaves its name in the index; it is dropped this
# long after its heartbeat expired (generous: the expiry is the worker's clock, the
# trim the reader's).
INDEX_GRACE_SECONDS = 3600


def default_hostname() -> str:
    """Celery's default node name, ``celery@<host>``."""
    return f"celery@{socket.gethostname()}"


def heartbeat_key(namespace: str, hostname: str) -> str:
    """The Redis key of ``hostname``'s heartbeat (:meth:`RedisKeys.worker_heartbeat`)."""
    return RedisKeys(namespace).worker_heartbeat(hostname)


def publish_heartbeat(
    client: redis.Redis, namespace: str, hostname: str, payload: dict[str, Any], ttl: int
) -> None:
    """Write ``hostname``'s heartbeat key (TTL ``ttl`` s) and list it in the index, in
    one round trip. Raises Redis's errors."""
    keys = RedisKeys(namespace)
    with client.pipeline(transaction=False) as pipe:
        pipe.set(keys.worker_heartbeat(hostname), json.dumps(payload), ex=ttl)
        pipe.zadd(keys.workers(), {hostname: time.time() + ttl})
        pipe.execute()


def retire_heartbeat(client: redis.Redis, namespace: str, hostname: str) -> None:
    """A worker that stops: its heartbeat and its name in the index go."""
    keys = RedisKeys(namespace)
    with client.pipeline(transaction=False) as pipe:
        pipe.delete(keys.worker_heartbeat(hostname))
        pipe.zrem(keys.workers(), hostname)
        pipe.execute()


def read_heartbeats(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """The heartbeats of the workers of ``namespace`` alive now (a key expires when its
    worker stops beating), by host name; names long expired leave the index."""
    keys = RedisKeys(namespace)
    client.zremrangebyscore(keys.workers(), "-inf", time.time() - INDEX_GRACE_SECONDS)
    hostnames = sorted(client.zrange(keys.workers(), 0, -1))
    payloads = client.mget([keys.worker_heartbeat(h) for h in hostnames]) if hostnames else []
    workers = []
    for raw in payloads:
        try:
            workers.append(json.loads(raw))
        except (TypeError, ValueError):
            continue  # expired, or not ours
    return workers


def heartbeat_path(directory: str | os.PathLike, hostname: str) -> Path:
    safe = hostname.replace("/", "_")
    return Path(directory) / f"{safe}.json"


def write_heartbeat_file(
    directory: str | os.PathLike, hostname: str, payload: dict[str, Any]
) -> Path:
    """Write atomically, so a probe never reads half a file."""
    return _write_json(heartbeat_path(directory, hostname), payload)


def _write_json(path: Path, payload: dict[str, Any]) -> Path:
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


# --- breaker fallback markers ------------------------------------------------------


def fallback_dir(directory: str | os.PathLike, hostname: str) -> Path:
    return Path(directory) / f"{hostname.replace('/', '_')}.breakers"


def mark_breaker_fallback(
    directory: str | os.PathLike,
    hostname: str,
    pid: int,
    error: str | None,
    now: float | None = None,
) -> None:
    """Process ``pid`` runs its breakers per process since ``now`` (Redis
    unreachable: ``error``)."""
    _write_json(
        fallback_dir(directory, hostname) / f"{pid}.json",
        {"pid": pid, "error": error, "since": time.time() if now is None else now},
    )


def clear_breaker_fallback(
    directory: str | os.PathLike, hostname: str, pid: int | None = None
) -> None:
    """Process ``pid`` is back on the shared state; ``pid=None`` forgets every
    marker (worker start and stop)."""
    folder = fallback_dir(directory, hostname)
    paths = [folder / f"{pid}.json"] if pid is not None else list(folder.glob("*.json"))
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    return True


def read_breaker_fallback(
    directory: str | os.PathLike, hostname: str, alive: Callable[[int], bool] = pid_alive
) -> list[dict[str, Any]]:
    """The markers of live processes, by pid; a dead process's marker (a pool child
    killed in fallback) is removed, since its breakers died with it."""
    markers = []
    for path in sorted(fallback_dir(directory, hostname).glob("*.json")):
        try:
            marker = json.loads(path.read_text())
            pid = int(marker["pid"])
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            marker, pid = None, -1  # torn or foreign: not evidence of anything
        if marker is None or not alive(pid):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        markers.append(marker)
    return sorted(markers, key=lambda m: m["pid"])


def breakers_summary(markers: list[dict[str, Any]]) -> dict[str, Any]:
    """What the heartbeat and ``inspect stats`` say about breaker fallback (a pure function)."""
    return {
        "fallback": bool(markers),
        "processes": [m["pid"] for m in markers],
        "error": next((m.get("error") for m in markers if m.get("error")), None),
    }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


def verdict(
    payload: dict[str, Any] | None, now: float, interval: float, *, live_only: bool = False
) -> Verdict:
    """Whether a worker is live (``live_only``) or ready, from its last heartbeat."""
    if payload is None:
        return Verdict(False, "no heartbeat file: the worker has not started, or has stopped")
    beat_at = payload.get("time")
    if not isinstance(beat_at, int | float):
        return Verdict(False, "heartbeat file is unreadable")
    age = now - beat_at
    if age > STALE_AFTER_INTERVALS * interval:
        limit = STALE_AFTER_INTERVALS * interval
        return Verdict(False, f"heartbeat is stale: last beat {age:.1f}s ago (limit {limit:.1f}s)")
    note = _fallback_note(payload.get("breakers"))
    if live_only:
        return Verdict(True, f"live: last beat {age:.1f}s ago{note}")
    if not payload.get("consumer_connected"):
        return Verdict(False, f"not ready: not connected to the broker (retrying){note}")
    return Verdict(True, f"ready: connected to the broker, last beat {age:.1f}s ago{note}")


def _fallback_note(breakers: Any) -> str:
    if not isinstance(breakers, dict) or not breakers.get("fallback"):
        return ""
    processes = breakers.get("processes") or []
    error = f": {breakers['error']}" if breakers.get("error") else ""
    return (
        f"; degraded: circuit breakers run per process in {len(processes)} process(es) "
        f"(Redis unreachable{error})"
    )


def beat_payload(
    hostname: str,
    interval: float,
    consumer_connected: bool,
    dependencies: dict[str, str],
    now: float | None = None,
    breakers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "pid": os.getpid(),
        "time": time.time() if now is None else now,
        "interval": interval,
        "consumer_connected": consumer_connected,
        "dependencies": dependencies,
        "breakers": breakers if breakers is not None else breakers_summary([]),
    }
