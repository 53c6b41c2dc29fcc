"""No level: reading the Lua scripts Jenga runs in Redis.

Each script sits beside the pure Python rule it applies atomically, with the
same stem (``common/alarms/policy.py`` + ``policy.lua``), never inside a
``.py`` file. The files ship as package data (``pyproject.toml``:
``common = ["**/*.lua"]``), so they are read through ``importlib.resources``.
Decoding a script's reply belongs to its caller, into a named dataclass.

The scripts run on Redis's clock (``TIME``), not on the calling worker's, so that
workers whose clocks disagree agree on when a period ended; :func:`redis_time`
reads that clock from a pipeline's ``TIME`` answer.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["read_lua", "redis_time"]


def read_lua(package: str, filename: str) -> str:
    """The source of ``filename`` in ``package``: ``read_lua("common.alarms", "policy.lua")``."""
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")


def redis_time(reply: tuple[int, int]) -> float:
    """Unix time from Redis's answer to ``TIME`` (seconds, microseconds)."""
    seconds, microseconds = reply
    return int(seconds) + int(microseconds) / 1e6
