"""Atomic file and folder writes: an interrupted stage never leaves an output that looks done."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# What open()/mkdir() would give: mkstemp/mkdtemp use 0600/0700, which would hide outputs from
# the rest of a group sharing a DVC cache.
UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary_file)`` on a temp file beside ``path``, fsync it, rename it over
    ``path``, and fsync the folder so the rename survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode())


def content_digest(paths: Iterable[Path]) -> dict[str, str]:
    """Path → SHA-256 of its content; a folder hashes every file under it (relative names and
    contents, hidden work folders included), a missing path maps to ``"missing"``.

    Keys resumable state by what a stage reads, not by names or timestamps: regenerated clips
    under unchanged file names change the digest.
    """
    return {str(p): _digest(Path(p)) for p in paths}


def _digest(path: Path) -> str:
    if path.is_file():
        return _file_sha256(path)
    if not path.is_dir():
        return "missing"
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{_file_sha256(f)}\n".encode())
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (stages run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Lay out ``fig``, write it as a PNG atomically, and close it."""
    plt = pyplot()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    plt.close(fig)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` whole.

    On an exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o777 & ~UMASK)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
