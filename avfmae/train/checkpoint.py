"""Checkpoints: atomic, periodic, resumable, preemption-safe (docs/model.md §9,
docs/design.md §9).

A checkpoint (``checkpoint-<step>.pt``, ``torch.save``) holds only tensors and plain Python
types so it loads with ``torch.load(..., weights_only=True)``:

* ``model``, ``optimizer``, ``scheduler``, ``scaler`` state dicts, ``step``, ``epoch``;
* ``sampler``: data-order state (epoch, samples consumed) of a
  :class:`~avfmae.train.distributed.ResumableDistributedSampler`;
* ``ranks``: per-rank state gathered from every rank — RNG states (Python, NumPy, torch CPU,
  every CUDA device) plus whatever the caller passes as ``rank_state`` (e.g. mixup RNG);
* ``extra``: any caller data (plain types), e.g. the config.

Saving is collective under DDP (all ranks call it; rank 0 writes). Writes are atomic: temp file
in the same folder, ``fsync``, ``os.replace``, ``fsync`` of the folder — a crash never leaves a
truncated ``checkpoint-*.pt``.

Preemption (SLURM sends SIGTERM, or SIGUSR1 with ``--signal=USR1@<s>``): :class:`Preemption`
only sets a flag; the loop checks :meth:`Preemption.should_stop` at each step boundary, writes a
checkpoint and exits with :data:`EXIT_PREEMPTED` (75, ``EX_TEMPFAIL``: "try again"), so a
requeued job or an orchestrator retry resumes from that checkpoint via
:meth:`CheckpointManager.resume`.

:func:`export_weights` writes the final model weights as safetensors for the next stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import re
import signal
import zipfile
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from avfmae.errors import UserError
from avfmae.io import atomic_write
from avfmae.train.distributed import (
    barrier,
    get_rank,
    get_world_size,
    is_distributed,
    is_main_process,
)

log = logging.getLogger(__name__)

__all__ = [
    "EXIT_PREEMPTED",
    "unwrap_model",
    "atomic_write",
    "capture_rng_state",
    "restore_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "restore_checkpoint",
    "CorruptCheckpoint",
    "CheckpointManager",
    "Preemption",
    "export_weights",
    "load_weights",
    "safetensors_bytes",
]

EXIT_PREEMPTED = 75
_CKPT_RE = re.compile(r"^checkpoint-(\d+)\.pt$")


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


# ----------------------------------------------------------------------------------------------
# RNG state as weights-only-loadable data
# ----------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """RNG states of ``random``, NumPy's global RNG, torch CPU and every CUDA device."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss),
                  "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["kind"], nps["keys"].numpy().astype(np.uint32), nps["pos"],
                         nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------


def _gather_rank_states(rank_state: Any) -> list[Any] | None:
    """Every rank's ``{"rng", "state"}`` on rank 0 (``None`` elsewhere)."""
    local = {"rng": capture_rng_state(), "state": rank_state}
    if not is_distributed():
        return [local]
    parts: list[Any] = [None] * get_world_size()
    dist.all_gather_object(parts, local)
    return parts if get_rank() == 0 else None


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    step: int,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    sampler: Any = None,
    rank_state: Any = None,
    extra: Any = None,
) -> Path | None:
    """Write a full training checkpoint atomically; collective under DDP (rank 0 writes).

    ``scheduler``, ``scaler`` (a ``GradScaler`` or :class:`~avfmae.train.amp.Precision`) and
    ``sampler`` only need ``state_dict()``. Returns the path on rank 0, ``None`` elsewhere.
    """
    ranks = _gather_rank_states(rank_state)
    if get_rank() != 0:
        barrier()
        return None
    ckpt = {
        "format_version": 1,
        "step": int(step),
        "epoch": int(epoch),
        "world_size": get_world_size(),
        "model": unwrap_model(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "sampler": sampler.state_dict() if sampler is not None else None,
        "ranks": ranks,
        "extra": extra,
    }
    out = atomic_write(path, lambda f: torch.save(ckpt, f))
    barrier()
    return out


class CorruptCheckpoint(UserError):
    """A checkpoint file that cannot be read back (truncated, overwritten, not a checkpoint)."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of ``path`` (``weights_only=True``); :class:`CorruptCheckpoint` names
    the file when it is unreadable, instead of a deep unpickling traceback."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        raise CorruptCheckpoint(f"{path}: unreadable checkpoint ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else 'no detail'}); "
                                "delete it or rerun with --resume never") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        raise CorruptCheckpoint(f"{path}: not an avfmae training checkpoint; delete it or rerun "
                                "with --resume never")
    return ckpt


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    sampler: Any = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint (``weights_only=True``) into the given objects.

    RNG state and ``rank_state`` are taken from this rank's entry (rank 0's when the world size
    changed). Returns ``{"step", "epoch", "extra", "rank_state"}``.
    """
    return restore_checkpoint(read_checkpoint(path), model=model, optimizer=optimizer,
                              scheduler=scheduler, scaler=scaler, sampler=sampler,
                              restore_rng=restore_rng, strict=strict)


def restore_checkpoint(
    ckpt: dict[str, Any],
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    sampler: Any = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """:func:`load_checkpoint` for a checkpoint dict already read with :func:`read_checkpoint`."""
    if model is not None:
        unwrap_model(model).load_state_dict(ckpt["model"], strict=strict)
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler"),
                     (sampler, "sampler")):
        if obj is not None and ckpt.get(key) is not None:
            obj.load_state_dict(ckpt[key])
    ranks = ckpt.get("ranks") or [None]
    mine = ranks[get_rank()] if len(ranks) == get_world_size() else ranks[0]
    if restore_rng and mine is not None:
        restore_rng_state(mine["rng"])
    return {"step": ckpt["step"], "epoch": ckpt["epoch"], "extra": ckpt.get("extra"),
            "rank_state": mine["state"] if mine is not None else None}


class CheckpointManager:
    """Periodic checkpoints in ``folder`` as ``checkpoint-<step>.pt``, keeping the latest ``keep``.

    ``due(step)`` says whether ``step`` is a multiple of ``every_steps``; ``save(step, …)`` takes
    :func:`save_checkpoint`'s keywords and prunes old files; ``resume(…)`` loads the latest
    checkpoint (if any) with :func:`load_checkpoint`'s keywords and returns its info or ``None``.
    """

    def __init__(self, folder: str | Path, *, every_steps: int = 50, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.folder = Path(folder)
        self.every_steps, self.keep = int(every_steps), int(keep)

    def path_for(self, step: int) -> Path:
        return self.folder / f"checkpoint-{step:09d}.pt"

    def checkpoints(self) -> list[Path]:
        """Existing checkpoints, oldest first (temp files are ignored)."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir()
                 if (m := _CKPT_RE.match(p.name))]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        paths = self.checkpoints()
        return paths[-1] if paths else None

    def due(self, step: int) -> bool:
        return step > 0 and step % self.every_steps == 0

    def save(self, step: int, **state: Any) -> Path | None:
        path = save_checkpoint(self.path_for(step), step=step, **state)
        if path is not None:
            for old in self.checkpoints()[: -self.keep]:
                old.unlink(missing_ok=True)
        return path

    def resume(self, **objects: Any) -> dict[str, Any] | None:
        """Load the newest intact checkpoint; unreadable newer ones are deleted (a torn copy, a
        full disk, a user's accident). Raises :class:`CorruptCheckpoint` naming the newest file
        when none is intact, rather than silently starting over."""
        paths = self.checkpoints()
        first_error: CorruptCheckpoint | None = None
        for path in reversed(paths):
            try:
                ckpt = read_checkpoint(path)
            except CorruptCheckpoint as err:
                first_error = first_error or err
                log.warning("%s; falling back to an older checkpoint", err)
                continue
            if is_main_process():
                for newer in paths[paths.index(path) + 1:]:
                    newer.unlink(missing_ok=True)
            info = restore_checkpoint(ckpt, **objects)
            info["path"] = path
            return info
        if first_error is not None:
            raise first_error
        return None


# ----------------------------------------------------------------------------------------------
# Preemption
# ----------------------------------------------------------------------------------------------


class Preemption:
    """Context manager that turns SIGTERM/SIGUSR1 into a stop request.

    The handler only records the signal. Check :meth:`should_stop` once per step on every rank
    (under DDP it is a collective: if any rank got the signal, all stop at the same step); then
    save a checkpoint and ``raise SystemExit(EXIT_PREEMPTED)``. Previous handlers come back on
    exit.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)) -> None:
        self.signals = signals
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> Preemption:
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        """Whether this process received a stop signal."""
        return self.received is not None

    def should_stop(self) -> bool:
        """Whether any rank received a stop signal (all-reduce MAX under DDP)."""
        if not is_distributed():
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0])
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


# ----------------------------------------------------------------------------------------------
# Final weights
# ----------------------------------------------------------------------------------------------


def export_weights(
    model_or_state: torch.nn.Module | dict[str, torch.Tensor],
    path: str | Path,
    metadata: dict[str, str] | None = None,
) -> Path | None:
    """Write model weights as safetensors, atomically, on rank 0 (``None`` on other ranks).

    Tensors are made contiguous and de-aliased (tied weights are stored as copies).
    """
    if get_rank() != 0:
        return None
    from safetensors.torch import save

    state = model_or_state
    if isinstance(state, torch.nn.Module):
        state = unwrap_model(state).state_dict()
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    data = safetensors_bytes(save(tensors, metadata=metadata))
    return atomic_write(path, lambda f: f.write(data))


def safetensors_bytes(data: bytes) -> bytes:
    """``data`` with its JSON header re-serialised in a fixed order.

    The safetensors writer keeps ``__metadata__`` in a hash map whose order is random per
    process, so the same tensors would hash differently from run to run and DVC would rerun
    every stage downstream. The tensor table and the data offsets are left as they are.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    meta = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(meta.items()))} if meta else {}
    text = json.dumps({**ordered, **header}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data section to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + size:]


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors weights file onto the CPU."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")
