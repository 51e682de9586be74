"""The package's import graph has no circle, function-level and type-checking imports included.

A circle held together by an import inside a function, or by one made only for type checkers,
still couples the two modules both ways; the fix is to move the shared code down a floor.
"""

from __future__ import annotations

import ast
from pathlib import Path

from avfmae import codegraph

PACKAGE_DIR = codegraph.ROOT


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def import_edges() -> dict[str, set[str]]:
    """Module → package modules it imports anywhere in its body, type-checking blocks included
    (``from pkg import sub`` points at ``pkg.sub``; ``from pkg import name`` at ``pkg``)."""
    modules = _module_names()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = codegraph._resolve(node, package)
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                          for a in node.names}
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle():
    assert cycles(import_edges()) == []


def test_the_circle_finder_sees_function_level_and_type_checking_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    real = import_edges()
    assert "avfmae.train.finetune" in real["avfmae.cli"]  # imported inside a command function
    assert "avfmae.config" in real["avfmae.data.index"]  # under TYPE_CHECKING only
