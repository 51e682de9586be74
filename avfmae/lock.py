"""One pipeline run per checkout, whichever orchestrator runs it.

DVC and Snakemake each guard only their own runs, and both delete a stage's outputs before they
start it, so two runs on one checkout overwrite each other. A run claims the checkout in
``.avfmae/run.lock`` (JSON: tool, host, pid, process start, command); a second run is refused
with a message naming the holder. A claim whose process is gone (same host: its pid no longer
runs, or runs a different process) is stale and taken over.

A run is identified by its orchestrator process: Snakemake's main process claims the checkout
before it schedules anything and exports :data:`RUN_ENV` to its jobs (SLURM jobs inherit the
submit environment); a stage command without it belongs to its nearest ``dvc`` ancestor, else
to itself. Snakemake also holds DVC's own repository lock for the whole run, because ``dvc
repro`` deletes outputs before its first stage command could be refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from avfmae.errors import UserError

__all__ = ["Holder", "RUN_ENV", "LOCK_PATH", "current_run", "claim", "release",
           "hold_dvc_lock"]

log = logging.getLogger(__name__)

LOCK_PATH = Path(".avfmae/run.lock")
RUN_ENV = "AVFMAE_RUN"
DVC_LOCK = Path(".dvc/tmp/lock")


@dataclass(frozen=True)
class Holder:
    """The process a run belongs to. ``started`` tells a reused pid from the original."""

    tool: str
    host: str
    pid: int
    started: str
    command: str

    def describe(self) -> str:
        return f"{self.tool} (pid {self.pid} on {self.host}: {self.command})"

    def alive(self) -> bool:
        """Whether the holder still runs; a holder on another host is assumed to."""
        if self.host != _hostname():
            return True
        return _process_start(self.pid) == self.started

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Holder:
        return cls(**json.loads(text))


def _hostname() -> str:
    return socket.gethostname()


def _process_start(pid: int) -> str | None:
    """Boot id and start tick of a process: unique per process on this host, None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    # field 22 (starttime); the command name (field 2) may hold spaces, so split after it
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def holder_of(pid: int, tool: str) -> Holder:
    """The :class:`Holder` record of a running process."""
    return Holder(tool=tool, host=_hostname(), pid=pid, started=_process_start(pid) or "",
                  command=" ".join(Path(a).name if i == 0 else a
                                   for i, a in enumerate(_argv(pid)))[:200])


def current_run() -> Holder:
    """The run this process belongs to: the exported Snakemake run, a ``dvc`` ancestor, or self."""
    if RUN_ENV in os.environ:
        return Holder.from_json(os.environ[RUN_ENV])
    pid = _parent(os.getpid())
    while pid > 1:
        if any(Path(a).name == "dvc" for a in _argv(pid)[:2]):
            return holder_of(pid, "dvc")
        pid = _parent(pid)
    return holder_of(os.getpid(), "avfmae")


def _read(path: Path) -> Holder | None:
    try:
        return Holder.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None


def claim(holder: Holder, path: Path = LOCK_PATH) -> None:
    """Make ``holder`` the run writing this checkout; :class:`UserError` if another live run is.

    Creation is atomic (``O_EXCL``), so two runs starting at once cannot both win.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = _read(path)
            if current == holder:
                return
            if current is not None and current.alive():
                raise UserError(
                    f"another pipeline run is writing this checkout: {current.describe()}; "
                    f"wait for it to finish (if that process is gone, delete {path})")
            _take_over(path, current)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(holder.to_json())
        return
    raise UserError(f"could not claim {path}: other runs keep taking it over")


def _take_over(path: Path, stale: Holder | None) -> None:
    """Remove a stale claim, unless a racing run replaced it since it was read."""
    if stale is None and time.time() - _mtime(path) < 5:
        time.sleep(1)  # a claim being written right now reads as empty
        return
    moved = path.with_name(f"{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, moved)
        if _read(moved) != stale:
            with contextlib.suppress(FileExistsError):
                os.link(moved, path)
        else:
            log.info("taking over %s from %s, which no longer runs", path,
                        stale.describe() if stale else "an unreadable claim")
        moved.unlink()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def release(holder: Holder, path: Path = LOCK_PATH) -> None:
    """Drop the claim if ``holder`` still has it."""
    if _read(path) == holder:
        path.unlink(missing_ok=True)


_held: list[object] = []


def hold_dvc_lock(holder: Holder, path: Path = DVC_LOCK) -> None:
    """Hold DVC's repository lock until this process exits, so ``dvc repro`` cannot start.

    Does nothing outside a DVC repository. :class:`UserError` while a DVC command holds it.
    """
    import zc.lockfile

    if not path.parent.parent.is_dir():
        return
    path.parent.mkdir(exist_ok=True)
    try:
        _held.append(zc.lockfile.LockFile(str(path), content_template=f"{{pid}} {holder.tool}"))
    except zc.lockfile.LockError:
        raise UserError(f"a DVC command is running on this checkout (it holds {path}: pid "
                        f"{path.read_text().split()[0] if path.read_text().strip() else '?'}); "
                        "wait for it to finish") from None
