"""Which package modules a stage runs, and a fingerprint of their code that ignores docs.

A stage's code dependency is the static import closure of its entry module inside ``avfmae``:
every ``import``/``from … import`` anywhere in a module (function-level imports included, since
the stages import lazily), the packages' ``__init__`` files on the way, and every module of a
package that loads its members by name with ``importlib`` (the dataset parsers). Third-party
imports are not followed: the environment is pinned separately.

The fingerprint hashes each module's syntax tree with docstrings removed, so comment and
docstring edits rerun nothing, while any change to what the code does reruns the stages that
import it.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

__all__ = ["module_files", "code_fingerprint"]

PACKAGE = "avfmae"
ROOT = Path(__file__).resolve().parent


# Their own code is a dependency, their imports are not: config's serve params validation, which
# runs in the check stage (that stage depends on the whole package); the package's __init__
# exports `predict` lazily, so importing any submodule never loads it.
NOT_FOLLOWED = ("avfmae.config", "avfmae")


def module_files(entries: tuple[str, ...]) -> list[Path]:
    """Files (relative to the repository root) of the import closure of ``entries``."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen or _path(name) is None:
            continue
        seen.add(name)
        if name not in NOT_FOLLOWED:
            todo.extend(_imports(name))
    return sorted(_path(n).relative_to(ROOT.parent) for n in seen)  # type: ignore[union-attr]


def code_fingerprint(files: list[Path], repo: Path = ROOT.parent) -> str:
    """SHA-256 over the docstring-free syntax trees of ``files``, one line per file."""
    lines = [f"{f.as_posix()} {_tree_digest(repo / f)}" for f in sorted(files)]
    return "\n".join(lines) + "\n"


def _path(module: str) -> Path | None:
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = ROOT.parent.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _imports(module: str) -> tuple[str, ...]:
    """Modules of the package that ``module`` imports, with their parent packages."""
    path = _path(module)
    assert path is not None
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            found.append(base)
            # `from pkg import name` may name a submodule
            found += [f"{base}.{alias.name}" for alias in node.names]
    if "import_module" in path.read_text() and path.name == "__init__.py":
        found += [f"{package}.{p.stem}" for p in path.parent.glob("*.py")
                  if p.name != "__init__.py"]
    with_parents = {m.rsplit(".", i)[0] for m in found for i in range(m.count(".") + 1)}
    return tuple(sorted(m for m in with_parents if _path(m) is not None))


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _tree_digest(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()
