"""The epoch/step loop shared by pretraining and fine-tuning.

One loop for both stages: AMP, gradient clipping, per-step schedule, the resumable sampler,
periodic checkpoints, a checkpoint and exit code 75 on SIGTERM/SIGUSR1 (SLURM preemption), a
progress bar with loss and clips/s on rank 0, a per-epoch hook (validation), and live curves
(:mod:`avfmae.curves`) per step or per epoch. Resuming
restores model, optimizer, scaler, schedule, RNG and data position, so an interrupted-and-
resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from avfmae.progress import progress

from avfmae.curves import log_record, open_curves
from avfmae.errors import UserError
from avfmae.io import atomic_write_text
from avfmae.train.amp import Precision, optimizer_step
from avfmae.train.checkpoint import EXIT_PREEMPTED, CheckpointManager, Preemption
from avfmae.train.distributed import (
    ResumableDistributedSampler,
    ResumableLoader,
    all_reduce_mean,
    get_world_size,
    is_main_process,
)
from avfmae.train.optim import WarmupCosineSchedule

log = logging.getLogger(__name__)

StepFn = Callable[[dict[str, Any], int], dict[str, torch.Tensor]]
EpochFn = Callable[[int], dict[str, float]]


def settings_digest(settings: dict[str, Any]) -> str:
    """A short stable hash of the settings that determine a run's result."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_run_dir(run_dir: Path, settings: dict[str, Any], resume: str) -> CheckpointManager:
    """Set up ``run_dir`` for a run with ``settings``; decide what may be resumed.

    ``resume='auto'`` keeps the run folder only when it was made with the same settings,
    which include the digests of the inputs the stage reads (editing a learning rate or
    re-preprocessing the clips starts over rather than continuing a different run);
    ``'never'`` always starts over; a path resumes from that checkpoint file.
    """
    ckpt_dir = run_dir / "checkpoints"
    stamp = run_dir / "settings.json"
    digest = settings_digest(settings)
    if resume not in ("auto", "never") and not Path(resume).is_file():
        raise UserError(f"--resume {resume}: no such checkpoint file")
    try:
        previous = json.loads(stamp.read_text()).get("digest") if stamp.is_file() else None
    except (ValueError, AttributeError):
        previous = None
    if is_main_process() and run_dir.exists() and (resume == "never" or previous != digest):
        why = "--resume never" if resume == "never" else "its settings or inputs changed"
        log.info("starting over in %s (%s)", run_dir, why)
        shutil.rmtree(run_dir)
    if is_main_process():
        atomic_write_text(stamp, json.dumps({"digest": digest, "settings": settings},
                                            indent=2, default=str) + "\n")
    return CheckpointManager(ckpt_dir)


def finish_run(run_dir: Path) -> None:
    """Remove a finished run's folder: its outputs are exported, and a checkpoint left behind
    could later be "resumed" by a run that should have trained afresh."""
    if is_main_process():
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class Loop:
    """Everything one training run needs; :meth:`fit` runs it.

    ``model`` is what the step function calls (possibly DDP-wrapped); ``module`` the bare
    module whose state is checkpointed. ``curves``: the folder of the live curves, one point
    per training step (``curve_every="step"``) or per epoch.
    """

    model: nn.Module
    module: nn.Module
    loader: ResumableLoader
    sampler: ResumableDistributedSampler
    optimizer: torch.optim.Optimizer
    schedule: WarmupCosineSchedule
    precision: Precision
    checkpoints: CheckpointManager
    epochs: int
    clip_grad: float = 0.0
    every_steps: int = 50
    desc: str = "train"
    curves: Path | None = None
    curve_every: str = "epoch"
    _live: Any = field(default=None, init=False, repr=False)
    history: list[dict[str, float]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    step: int = 0

    def _state(self) -> dict[str, Any]:
        return {"model": self.module, "optimizer": self.optimizer, "scheduler": self.schedule,
                "scaler": self.precision, "sampler": self.sampler}

    def resume(self, path: str = "auto") -> bool:
        """Restore the latest (or the given) checkpoint; True when something was restored."""
        from avfmae.train.checkpoint import load_checkpoint

        if path not in ("auto", "never"):
            info = load_checkpoint(path, **self._state())
        else:
            info = self.checkpoints.resume(**self._state()) if path == "auto" else None
        if info is None:
            return False
        self.step = int(info["step"])
        extra = info.get("extra") or {}
        self.history = list(extra.get("history", []))
        self.steps = list(extra.get("steps", []))
        log.info("resumed from %s (step %d, epoch %d)", info.get("path", path), self.step,
                 self.sampler.epoch)
        return True

    def _save(self) -> None:
        self.checkpoints.save(self.step, epoch=self.sampler.epoch,
                              extra={"history": self.history, "steps": self.steps},
                              **self._state())

    def fit(self, step_fn: StepFn, epoch_end: EpochFn | None = None) -> list[dict[str, float]]:
        """Train to ``epochs``; returns one record per epoch (mean losses + ``epoch_end``'s)."""
        self.checkpoints.every_steps = self.every_steps
        done = {int(h["epoch"]) for h in self.history}
        self._live = None
        if self.curves is not None and is_main_process():
            restored = self.steps if self.curve_every == "step" else self.history
            self._live = open_curves(self.curves, restored)
        with Preemption() as preemption:
            for epoch in range(self.sampler.epoch, self.epochs):
                if epoch in done:
                    continue
                self.loader.set_epoch(epoch)
                self._train_epoch(epoch, step_fn, preemption)
                record = {"epoch": epoch, **self._epoch_means(epoch), "lr": self.schedule.lr}
                if epoch_end is not None:
                    record.update(epoch_end(epoch))
                self.history.append(record)
                self._curve_point(record, "epoch")
                log.info("%s epoch %d: %s", self.desc, epoch,
                         ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"))
                self._save()
        if self._live is not None:
            self._live.end()
        return self.history

    def _curve_point(self, record: dict[str, float], every: str) -> None:
        if self._live is not None and self.curve_every == every:
            log_record(self._live, record)

    def _train_epoch(self, epoch: int, step_fn: StepFn, preemption: Preemption) -> None:
        self.model.train()
        bar = progress(len(self.loader), f"{self.desc} epoch {epoch + 1}/{self.epochs}",
                       disable=not is_main_process())
        world = get_world_size()
        for batch in self.loader:
            started = time.perf_counter()
            with self.precision.autocast():
                losses = step_fn(batch, epoch)
            optimizer_step(losses["loss"], self.optimizer, self.precision,
                           parameters=self.module.parameters(), clip_grad=self.clip_grad)
            self.schedule.step()
            n = len(batch["clip_id"])
            self.sampler.advance(n)
            self.step += 1
            record = {k: float(all_reduce_mean(v.detach().float())) for k, v in losses.items()}
            record.update(step=self.step, epoch=epoch, lr=self.schedule.lr)
            self.steps.append(record)
            self._curve_point(record, "step")
            bar.set_postfix(loss=f"{record['loss']:.4f}",
                            clips_s=f"{n * world / (time.perf_counter() - started):.1f}")
            bar.update(1)
            if preemption.should_stop():
                self._save()
                log.warning("stop signal received: checkpoint written at step %d", self.step)
                raise SystemExit(EXIT_PREEMPTED)
            if self.checkpoints.due(self.step):
                self._save()
        bar.close()

    def _epoch_means(self, epoch: int) -> dict[str, float]:
        rows = [s for s in self.steps if s["epoch"] == epoch]
        keys = [k for k in rows[0] if k not in ("step", "epoch", "lr")] if rows else []
        return {k: sum(r[k] for r in rows) / len(rows) for k in keys}
