"""No level: reading the Lua scripts Jenga runs in Redis.

Each script sits beside the pure Python rule it applies atomically, with the
same stem (``common/alarms/policy.py`` + ``policy.lua``), never inside a
``.py`` file. The files ship as package data (``pyproject.toml``:
``common = ["**/*.lua"]``), so they are read through ``importlib.resources``.
Decoding a script's reply belongs to its caller, into a named dataclass.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["read_lua"]


def read_lua(package: str, filename: str) -> str:
    """The source of ``filename`` in ``package``: ``read_lua("common.alarms", "policy.lua")``."""
    return resources.files(package).joinpath(filename).read_text(encoding="utf-8")
