"""What runs inside a preprocess worker process (kept light: no pandas/pandera imports).

Workers are forked from a forkserver that preloads :data:`WORKER_MODULES` (one import for the
whole pool). A worker's parent is the forkserver, not the stage, and pool workers hold each
other's pipes open, so neither EOF nor ``PR_SET_PDEATHSIG`` alone notices a killed stage: a
watchdog thread polls the stage process (pid + start time) and ends the worker when it is gone,
and :func:`process_clip` checks the same before renaming a finished clip into place. Once the
workers are gone the forkserver sees EOF and exits too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
import traceback
from pathlib import Path

import torchcodec.decoders  # noqa: F401  (load the FFmpeg libraries once, in the forkserver)
import torchcodec.encoders  # noqa: F401  (likewise for the encoder side)

from .clip import ClipJob, ClipResult, process_clip
from .faces import preload_detectors
from .settings import Settings

preload_detectors()

__all__ = [
    "WORKER_MODULES", "init_worker", "one_thread", "run_job", "guarded", "stage_alive",
    "stage_identity",
]

WORKER_MODULES = ["avfmae.preprocess.worker"]

_SETTINGS: Settings | None = None
_STAGE: tuple[int, str] | None = None  # (pid, start time) of the stage process


def one_thread() -> None:
    """One compute thread per process (parallelism is across clips)."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def stage_alive() -> bool:
    """Whether the stage process that owns this worker still runs (always True inline)."""
    if _STAGE is None:
        return True
    pid, started = _STAGE
    return _start_time(pid) == started


def _watchdog() -> None:
    while stage_alive():
        time.sleep(0.25)
    os._exit(1)  # the stage died: stop at once, finish nothing


def init_worker(settings: Settings, stage_pid: int, stage_started: str | None) -> None:
    """Pool initializer: remember the settings, die with the stage, one thread per process."""
    global _SETTINGS, _STAGE
    _SETTINGS = settings
    try:  # dies with the forkserver that forked it, too
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    if stage_started is not None:
        _STAGE = (stage_pid, stage_started)
        if not stage_alive():
            os._exit(1)
        threading.Thread(target=_watchdog, name="stage-watchdog", daemon=True).start()
    one_thread()


def stage_identity() -> tuple[int, str | None]:
    """``(pid, start time)`` of this process, for :func:`init_worker`."""
    return os.getpid(), _start_time(os.getpid())


def run_job(job: ClipJob) -> ClipResult:
    assert _SETTINGS is not None, "init_worker was not run"
    return guarded(job, _SETTINGS, stage_alive)


def guarded(job: ClipJob, settings: Settings, alive=None) -> ClipResult:
    """:func:`process_clip`, with an unexpected exception (a bug) turned into an ``error``
    reject that carries its traceback for the log."""
    try:
        return process_clip(job, settings, alive)
    except Exception as err:
        res = ClipResult(job.clip_id, False, "error", f"{type(err).__name__}: {err}"[:300])
        res.timing = {"traceback": traceback.format_exc()}  # type: ignore[dict-item]
        return res
