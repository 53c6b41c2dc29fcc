"""Level 0: loading the settings before anything connects.

Every setting comes from the environment (names in upper case), optionally from
an env file (``JENGA_ENV_FILE``) and a secrets folder (``JENGA_SECRETS_DIR``,
one file per setting, as Docker and Kubernetes mount them). Because those files
can appear a moment after the container starts, loading is retried with
backoff for ``CONFIG_WAIT_SECONDS``; then it gives up with one
:class:`ConfigError` that names every problem. Secret values never appear in
its message, nor in :func:`~common.config.settings.describe_settings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from common.config.settings import Settings
from common.support.backoff import full_jitter_backoff
from common.support.logs import print_config_error
from common.support.masking import SECRETS
from common.support.per_process import ProcessSlot

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "get_settings",
    "load_settings",
    "load_settings_or_exit",
    "read_settings",
    "set_settings",
]

EX_CONFIG = 78  # sysexits.h: configuration error; supervisors can tell it from a crash


class ConfigError(Exception):
    """The configuration is missing or invalid; ``problems`` names each setting."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(self.message())

    def message(self) -> str:
        lines = [f"Jenga cannot start: {len(self.problems)} configuration problem(s):"]
        lines += [f"  - {problem}" for problem in self.problems]
        lines.append(
            "Set these in the environment (see the settings table in README.md), then start again."
        )
        return "\n".join(lines)


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        location = [str(part) for part in item["loc"]]
        name = location[0].upper() if location else "configuration"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "missing (required)"
        problems.append(f"{name}: {message}" if location else message)
    return problems


def _meta_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError([f"{name}: not a number of seconds"]) from None


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """One attempt at loading from ``environ`` (default: the process's
    environment) and the files it names. Raises :class:`ConfigError` listing
    every problem. The mapping is passed to the model as values, so reading a
    test's or an embedder's mapping never touches ``os.environ``."""
    environ = os.environ if environ is None else environ
    sources: dict[str, Any] = {}
    if environ.get("JENGA_ENV_FILE"):
        sources["_env_file"] = environ["JENGA_ENV_FILE"]
    if environ.get("JENGA_SECRETS_DIR") and os.path.isdir(environ["JENGA_SECRETS_DIR"]):
        sources["_secrets_dir"] = environ["JENGA_SECRETS_DIR"]
    fields = Settings.model_fields
    values = {name.lower(): value for name, value in environ.items() if name.lower() in fields}
    try:
        return Settings(**sources, **values)
    except ValidationError as error:
        raise ConfigError(_problems(error)) from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    wait_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Settings:
    """Load settings, retrying with backoff for up to ``wait_seconds``
    (default: ``CONFIG_WAIT_SECONDS``, 2 s), then raise :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    if wait_seconds is None:
        wait_seconds = _meta_float(environ, "CONFIG_WAIT_SECONDS", 2.0)
    deadline = clock() + wait_seconds
    attempt = 0
    while True:
        try:
            settings = read_settings(environ)
        except ConfigError:
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            sleep(min(remaining, full_jitter_backoff(attempt, 0.1, 1.0)))
            attempt += 1
            continue
        for secret in settings.secret_values():
            SECRETS.add(secret)
        return settings


_current: ProcessSlot[Settings | None] = ProcessSlot(None)


def get_settings() -> Settings:
    """The settings of this process, loaded once; exits with the message on failure."""
    settings = _current.get()
    if settings is None:
        settings = load_settings_or_exit()
        _current.set(settings)
    return settings


def set_settings(settings: Settings | None) -> None:
    """Install (or forget, with ``None``) this process's settings; for tests and embedders."""
    _current.set(settings)
    if settings is not None:
        for secret in settings.secret_values():
            SECRETS.add(secret)


def load_settings_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """Load settings or stop the process with one clear message (no traceback)."""
    try:
        return load_settings(environ)
    except ConfigError as error:
        print_config_error(error, os.environ if environ is None else environ)
        raise SystemExit(EX_CONFIG) from None
