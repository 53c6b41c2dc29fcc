"""The migrations form one line: `alembic upgrade head` (the Procfile's release step)
refuses to run when two of them revise the same one."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_have_one_head():
    scripts = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini")))
    heads = scripts.get_heads()
    assert len(heads) == 1, f"migrations branch: heads {heads}; chain the newest onto the other"
