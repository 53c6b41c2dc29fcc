"""The levels hold: no import cycle among ``common``, ``worker`` and ``api``
(function-level imports included), ``common`` imports neither of the others,
and ``api`` never imports ``worker``. Walks the source with ``ast``; nothing
is imported."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.servers import ROOT

PACKAGES = ("common", "worker", "api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    edges = {name: imports_of(path, modules) for name, path in modules.items()}
    for name, targets in edges.items():
        # A module's own packages (a and a.b for a.b.c) are imported before it runs: not edges.
        parts = name.split(".")
        targets.difference_update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_common_imports_neither_worker_nor_api_and_api_not_worker():
    wrong = [
        (a, b)
        for a, targets in graph().items()
        for b in targets
        if (a.startswith("common") and b.split(".")[0] in ("worker", "api"))
        or (a.startswith("api") and b.startswith("worker"))
    ]
    assert wrong == []


def test_the_walk_sees_function_level_imports(tmp_path):
    """The checker itself: an import inside a function counts."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from common.config import get_settings\n")
    assert imports_of(source, project_modules()) == {"common.config"}


def test_the_checker_finds_a_cycle():
    assert cycles({"a.x": {"a.y"}, "a.y": {"a.x"}, "a": set()}) == [["a.x", "a.y"]]
