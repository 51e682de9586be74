"""The fine-tuning stages of progressive semantics injection, per dataset and fold.

- **s1** hybrid intermediate fine-tuning: the training parts (fold ``k``) of every enabled
  labeled dataset of the target's task family, pooled, one head per dataset; starts from the
  pretrained encoder. It never sees a clip of the target fold's test or validation split
  (asserted).
- **s2** targeted adaptation: the target's training part, encoders frozen, fusion and the
  target's s1 head trained (a new head with ``fresh_head``).
- **s3** targeted full fine-tuning: everything trainable, layer-wise LR decay.

Each stage starts from the previous enabled stage's selected weights (the first from the
pretrained encoder, or from scratch with ``finetune.init: random``), picks its best epoch on
the target's validation split, and writes ``models/finetune/<ds>/fold<k>/<stage>/`` (``best`` and
``last`` weights), ``metrics/<ds>/fold<k>/<stage>.json`` (the selection) and, live while it
trains, the curves ``live/finetune/<ds>/fold<k>/<stage>/`` (training loss, validation metrics,
learning rate per epoch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from avfmae import pipeline
from avfmae.config import Params, StageConfig
from avfmae.data import registry
from avfmae.data.clips import ClipDataset
from avfmae.errors import UserError
from avfmae.eval.inference import eval_dataset, predict, scalars, task_metrics
from avfmae.eval.model_card import model_card
from avfmae.io import atomic_write_text, content_digest
from avfmae.models import AVFClassifier
from avfmae.models.convert import encoder_size_mismatch, load_checkpoint
from avfmae.models.build import build_classifier
from avfmae.models.loading import load_pretrained_encoder, load_weights_into
from avfmae.tasks import Task, split_rows, task_of
from avfmae.train.amp import Precision
from avfmae.train.checkpoint import export_weights, load_weights
from avfmae.train.distributed import (
    ResumableDistributedSampler,
    ResumableLoader,
    cleanup_distributed,
    init_distributed,
    is_main_process,
)
from avfmae.train.loop import Loop, finish_run, prepare_run_dir
from avfmae.train.losses import regression_loss, soft_target_cross_entropy
from avfmae.train.mixup import MixupCutmix, joint_levels, level_marginals
from avfmae.train.optim import WarmupCosineSchedule, build_optimizer, scaled_lr
from avfmae.train.seeding import derive_seed, make_generator, seed_everything

log = logging.getLogger(__name__)

# keys separating the per-step randomness of mixup and of modality dropout from all other
MIX_STREAM = 2
DROP_STREAM = 3


def previous_stage(params: Params, stage: str) -> str | None:
    order = list(params.finetune.stages)
    at = order.index(stage)
    return order[at - 1] if at > 0 else None


def initialise(model: AVFClassifier, params: Params, dataset: str, fold: int,
               stage: str) -> str:
    """Load the weights a stage starts from; returns a description for the log."""
    prev = previous_stage(params, stage)
    if prev is not None:
        path = model_dir(params, dataset, fold, prev) / "best.safetensors"
        if not path.is_file():
            raise UserError(f"{path} is missing: run stage {prev} first")
        fresh = getattr(params.finetune, stage).fresh_head
        load_weights_into(model, path, heads=not fresh)
        return f"{prev} weights ({path}){', new heads' if fresh else ''}"
    if params.finetune.init == "random":
        return "random initialisation"
    if params.finetune.init != "pretrained":
        return load_init_checkpoint(model, Path(params.finetune.init))
    path = pipeline.path("pretrain", "encoder", params)
    if not path.is_file():
        raise UserError(f"{path} is missing: run `avfmae pretrain` (or set finetune.init: "
                        "random)")
    try:
        report = load_pretrained_encoder(model, load_weights(path))
    except ValueError as err:
        raise UserError(f"{path}: {err} (finetune.modality {params.finetune.modality}); "
                        "pretrain that modality or set finetune.init: random") from None
    log.info("%s %s fold %d starts from %s: %s", stage, dataset, fold, path, report.parts())
    return f"pretrained encoder ({len(report.loaded)} tensors)"


def load_init_checkpoint(model: AVFClassifier, path: Path) -> str:
    """Load the encoders of the checkpoint ``finetune.init`` names (published or converted,
    pretraining or classifier) after checking its sizes are those of ``model.scale``."""
    if not path.is_file():
        raise UserError(f"finetune.init: {path} does not exist")
    try:
        state = load_checkpoint(path)
        mismatch = encoder_size_mismatch(state, model.scale)
    except Exception as err:  # noqa: BLE001 - torch.load/pickle raise many types on junk
        raise UserError(f"finetune.init: {path} is not a usable AVF-MAE++ checkpoint: "
                        f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}") from None
    if mismatch:
        raise UserError(f"finetune.init: {path} does not fit model.scale "
                        f"{model.scale.name!r}: {mismatch}")
    report = load_pretrained_encoder(model, state)
    return f"checkpoint {path} ({len(report.loaded)} tensors)"


def pooled_datasets(params: Params, dataset: str, stage: str) -> list[str]:
    """The datasets whose training parts a stage trains on: the target alone, or for s1 every
    enabled or ``data.s1_pool`` dataset of the target's family (the target first)."""
    if stage != "s1":
        return [dataset]
    family = registry.get(dataset).family
    candidates = [dataset, *params.data.datasets, *params.data.s1_pool]
    return [d for d in dict.fromkeys(candidates) if registry.get(d).family == family]


def media_identity(rows: pd.DataFrame) -> pd.Series:
    """What identifies each clip's source media across datasets: its resolved source path and,
    where the file is readable, its size and the hash of its first 64 KiB (two datasets may hold
    copies of the same media under different paths)."""
    column = rows["src_video"] if "src_video" in rows else rows["video"]
    keys = []
    for path in column.astype(str):
        resolved = Path(path).resolve()
        keys.append({f"path:{resolved}", *_content_key(resolved)})
    return pd.Series(keys, index=rows.index, dtype=object)


def _content_key(path: Path) -> list[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        return [f"content:{path.stat().st_size}:{hashlib.sha256(head).hexdigest()[:20]}"]
    except OSError:  # media not on this machine: the path alone identifies it
        return []


def training_rows(params: Params, dataset: str, fold: int, stage: str) -> pd.DataFrame:
    """The rows a stage trains on: the target's training part, or for s1 the pooled training
    parts of :func:`pooled_datasets`, with a ``dataset`` column.

    No row may show media of the target fold's validation or test split, whichever dataset
    brought it: rows of other datasets that do (datasets sharing media, e.g. MAFW's 11- and
    43-class sets) are left out, and such a row of the target itself is an error.
    """
    frames = []
    for ds in pooled_datasets(params, dataset, stage):
        rows = split_rows(params, ds, fold, "train").copy()
        rows["dataset"] = ds
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    held_out = pd.concat([split_rows(params, dataset, fold, part) for part in ("val", "test")])
    forbidden = set().union(*media_identity(held_out))
    leaked = media_identity(rows).map(lambda keys: bool(keys & forbidden))
    own = leaked & (rows["dataset"] == dataset)
    if own.any():
        raise RuntimeError(f"{stage} training data of {dataset} fold {fold} contains "
                           f"{int(own.sum())} held-out clip(s), e.g. "
                           f"{sorted(rows.loc[own, 'clip_id'])[:3]}")
    if leaked.any():
        log.warning("%s %s fold %d: left out %d clip(s) of %s that share media with the "
                    "target's validation or test split", stage, dataset, fold,
                    int(leaked.sum()), ", ".join(sorted(set(rows.loc[leaked, "dataset"]))))
    return rows[~leaked].reset_index(drop=True)


def target_columns(tasks: dict[str, Task]) -> list[str]:
    """The target columns of every task (regression values, level indices), in first-seen
    order: one batch tensor, each head reading its own columns of it."""
    return list(dict.fromkeys(c for t in tasks.values() for c in t.target_columns))


def run_settings(params: Params, dataset: str, fold: int, stage: str) -> dict[str, Any]:
    """What determines a stage's result: its config, the model, the data, the initial weights."""
    ft = {f.name: getattr(params.finetune, f.name) for f in dataclasses.fields(params.finetune)
          if f.name not in ("s1", "s2", "s3", "num_workers", "stages")}
    return {"model": dataclasses.asdict(params.model), "finetune": ft,
            "stage": dataclasses.asdict(getattr(params.finetune, stage)),
            "datasets": params.data.datasets, "eval": dataclasses.asdict(params.eval),
            "inputs": content_digest(stage_reads(params, dataset, fold, stage))}


def stage_reads(params: Params, dataset: str, fold: int, stage: str) -> list[Path]:
    """Every input a stage's result depends on: the weights it starts from, and the clip stores
    and splits (``data/interim``) of the datasets it trains and selects on."""
    prev = previous_stage(params, stage)
    if prev is not None:
        init = [model_dir(params, dataset, fold, prev) / "best.safetensors"]
    else:
        start = pipeline.init_checkpoint(params)
        init = [Path(start)] if start else []
    datasets = pooled_datasets(params, dataset, stage)
    return [*init, *(pipeline.path(producer, role, params, ds=ds) for ds in datasets
                     for producer, role in (("preprocess", "clips"), ("index", "index")))]


def unimodal_heads(params: Params, cfg: StageConfig) -> bool:
    """Whether a stage trains the unimodal heads: an AV model with ``unimodal_loss`` on."""
    return cfg.unimodal_loss > 0 and params.finetune.modality == "av"


def freeze_encoders(model: AVFClassifier) -> int:
    """Freeze both modality encoders (s2); returns the number of frozen tensors."""
    frozen = 0
    for name, p in model.named_parameters():
        if name.startswith(("video_encoder.", "audio_encoder.")):
            p.requires_grad_(False)
            frozen += 1
    return frozen


class Objective:
    """Per-batch loss of a (possibly multi-dataset) batch.

    Classification: mixup/cutmix + label smoothing within each dataset's rows (label spaces
    differ across datasets), soft-target cross-entropy on that dataset's head. A levelled task
    (D dimensions of L levels) mixes its clips' level combinations as ``L**D`` joint classes,
    whose marginals are each dimension's mixed, smoothed target; its loss is the mean over
    dimensions of the per-dimension cross-entropy. Regression: MSE or CCC. An AV model's stage
    with ``unimodal_loss`` adds, per head, that weight times the same loss of the video and of
    the audio unimodal head (docs/model.md §6.1). One forward pass computes every head, and
    heads with no rows in the batch enter the loss with weight 0, so DDP needs no
    ``find_unused_parameters``.
    """

    def __init__(self, params: Params, cfg: StageConfig, tasks: dict[str, Task], rank: int):
        self.params, self.cfg, self.tasks, self.rank = params, cfg, tasks, rank
        columns = target_columns(tasks)
        # each head is trained on its own dataset's target columns of the batch
        self.columns = {name: [columns.index(c) for c in t.target_columns]
                        for name, t in tasks.items()}

    def __call__(self, model: nn.Module, batch: dict[str, Any], epoch: int,
                 device: torch.device) -> torch.Tensor:
        names = list(batch["dataset"])
        video, audio = batch["video"].clone(), batch["audio"].clone()
        soft: dict[str, torch.Tensor] = {}
        rows: dict[str, torch.Tensor] = {}
        for name, task in self.tasks.items():
            sel = torch.tensor([d == name for d in names])
            rows[name] = sel
            if sel.any() and not task.regression:
                video[sel], audio[sel], soft[name] = self._mix(
                    task, video[sel], audio[sel], self._classes(task, batch, sel),
                    batch["index"][sel], epoch)
        if self.cfg.modality_dropout > 0:  # the params check allows it for "av" only
            video, audio = self._drop_modality(video, audio, batch["index"], epoch)
        unimodal = unimodal_heads(self.params, self.cfg)
        logits = model(video.to(device), audio.to(device), head=None, unimodal=unimodal)
        # with the unimodal heads each head gives (joint, video, audio) logits
        w = self.cfg.unimodal_loss
        weights = (1.0, w, w) if unimodal else (1.0,)
        total = torch.zeros((), device=device)
        for name, task in self.tasks.items():
            sel = rows[name].to(device)
            outs = logits[name].float() if unimodal else logits[name].float()[None]
            if not rows[name].any():
                total = total + 0.0 * outs.sum()
                continue
            share = int(rows[name].sum()) / len(names)
            for weight, out in zip(weights, outs):
                total = total + weight * share * self._loss(task, name, out[sel], batch, rows,
                                                            soft, device)
        return total

    def _loss(self, task: Task, name: str, out: torch.Tensor, batch: dict[str, Any],
              rows: dict[str, torch.Tensor], soft: dict[str, torch.Tensor],
              device: torch.device) -> torch.Tensor:
        """The loss of one head's logits ``out`` on its dataset's rows of the batch."""
        if task.regression:
            target = batch["target"][rows[name]][:, self.columns[name]]
            return regression_loss(out, target.to(device).float(),
                                   kind=self.params.finetune.regression_loss)
        return soft_target_cross_entropy(out, soft[name].to(device))

    def _drop_modality(self, video: torch.Tensor, audio: torch.Tensor, index: torch.Tensor,
                       epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Set the audio of a ``modality_dropout / 2`` share of the clips to 0 (the normalised
        mean) and the video of another such share: a model that learned only the easier stream
        cannot fit those clips (measured: docs/results.md, 2026-12-06)."""
        gen = make_generator(self.params.finetune.seed, DROP_STREAM, epoch, int(index[0]),
                             self.rank)
        u = torch.rand(len(index), generator=gen)
        p = self.cfg.modality_dropout
        no_audio, no_video = u < p / 2, (u >= p / 2) & (u < p)
        audio[no_audio] = 0.0
        video[no_video] = 0.0
        return video, audio

    def _classes(self, task: Task, batch: dict[str, Any], sel: torch.Tensor) -> torch.Tensor:
        """``(B_sel,)`` the class to mix of each selected row: its label, or for a levelled
        task the joint class of its levels (read from the batch's target columns)."""
        if not task.levelled:
            return batch["label"][sel]
        levels = batch["target"][sel][:, self.columns[task.dataset]]
        return joint_levels(levels.long(), len(task.names))

    def _mix(self, task: Task, video: torch.Tensor, audio: torch.Tensor, classes: torch.Tensor,
             index: torch.Tensor, epoch: int) -> tuple[torch.Tensor, ...]:
        """Mixed video and audio, and soft targets ``(B, K)``, or ``(B, D, L)`` levelled."""
        cfg = self.cfg
        dims = max(1, len(task.dimensions))
        num_classes = len(task.names) ** dims
        mixer = MixupCutmix(num_classes, mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                            label_smoothing=cfg.label_smoothing,
                            mix_audio=self.params.finetune.mix_audio,
                            seed=derive_seed(self.params.finetune.seed, MIX_STREAM, epoch,
                                             int(index[0]), self.rank))
        if len(classes) < 2:  # nothing to mix with
            mixer = MixupCutmix(num_classes, mixup_alpha=0.0, cutmix_alpha=0.0,
                                label_smoothing=cfg.label_smoothing)
        video, audio, soft = mixer(video, audio, classes)
        if task.levelled:
            soft = level_marginals(soft, dims, len(task.names))
        return video, audio, soft


def finetune(params: Params, stage: str, dataset: str, fold: int, resume: str = "auto") -> Path:
    """Run (or resume) one fine-tuning stage of ``dataset``/``fold``; returns its model dir."""
    if stage not in params.finetune.stages:
        raise UserError(f"stage {stage} is not in finetune.stages {params.finetune.stages}")
    if dataset not in params.data.datasets:
        raise UserError(f"{dataset} is not in data.datasets {params.data.datasets}")
    cfg: StageConfig = getattr(params.finetune, stage)
    info = init_distributed()
    seed_everything(params.finetune.seed + info.rank)
    target = task_of(params, dataset)
    rows = training_rows(params, dataset, fold, stage)
    tasks = {ds: task_of(params, ds) for ds in dict.fromkeys(rows["dataset"])}
    columns = target_columns(tasks)
    for column in columns:  # rows of datasets without this target never reach its head
        rows[column] = rows[column].fillna(0.0) if column in rows else 0.0
    train_set = ClipDataset(rows, "train", seed=params.finetune.seed,
                            rand_augment=cfg.rand_augment, reprob=cfg.reprob,
                            min_crop_area=cfg.min_crop_area, targets=columns)
    val_set = eval_dataset(params, split_rows(params, dataset, fold, "val"), target)

    module = build_classifier(params, {ds: t.outputs for ds, t in tasks.items()},
                              drop_path=cfg.drop_path,
                              unimodal_heads=unimodal_heads(params, cfg)).to(info.device)
    origin = initialise(module, params, dataset, fold, stage)
    if cfg.freeze_encoders:
        freeze_encoders(module)
    model: nn.Module = module
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(module)

    sampler = ResumableDistributedSampler(train_set, seed=params.finetune.seed, drop_last=True)
    batch = min(cfg.batch_size, sampler.num_samples)
    loader = ResumableLoader(train_set, sampler=sampler, batch_size=batch,
                             seed=params.finetune.seed, num_workers=params.finetune.num_workers,
                             persistent_workers=params.finetune.num_workers > 0)
    steps_per_epoch = max(1, sampler.num_samples // batch)
    peak = scaled_lr(cfg.base_lr, batch * info.world_size)
    optimizer = build_optimizer(module, lr=peak, weight_decay=cfg.weight_decay,
                                betas=(0.9, 0.999), layer_id=module.layer_id,
                                num_layers=module.num_layers, layer_decay=cfg.layer_decay)
    schedule = WarmupCosineSchedule(optimizer, peak_lr=peak, min_lr=cfg.min_lr,
                                    warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
                                    total_steps=cfg.epochs * steps_per_epoch)
    run_dir = pipeline.path(f"finetune_{stage}", "run", params, ds=dataset, fold=fold)
    loop = Loop(model=model, module=module, loader=loader, sampler=sampler,
                optimizer=optimizer, schedule=schedule,
                precision=Precision.create(params.finetune.amp, info.device),
                checkpoints=prepare_run_dir(run_dir, run_settings(params, dataset, fold, stage),
                                            resume),
                epochs=cfg.epochs, desc=f"{stage} {dataset} fold {fold}",
                curves=pipeline.path(f"finetune_{stage}", "curves_summary", params,
                                     ds=dataset, fold=fold).parent)
    loop.resume(resume)
    log.info("%s %s fold %d: %d training clips (%s), %d validation clips, from %s, lr %.3g",
             stage, dataset, fold, len(train_set), ", ".join(tasks), len(val_set), origin, peak)

    objective = Objective(params, cfg, tasks, info.rank)
    best_path = run_dir / "best.safetensors"

    def validate(epoch: int) -> dict[str, float]:
        metrics = scalars(task_metrics(target, predict(
            module, val_set, target, batch_size=params.eval.batch_size, device=info.device)))
        score = metrics[target.selection_metric]
        best = max((h[f"val_{target.selection_metric}"] for h in loop.history), default=None)
        if best is None or score > best:
            export_weights(module, best_path,
                           metadata=checkpoint_metadata(params, target, stage, fold, epoch))
        return {f"val_{k}": v for k, v in metrics.items()}

    history = loop.fit(lambda b, e: {"loss": objective(model, b, e, info.device)}, validate)
    if is_main_process():
        _write_outputs(params, dataset, fold, stage, module, target, history, best_path)
        finish_run(run_dir)
    cleanup_distributed()
    return model_dir(params, dataset, fold, stage)


def model_dir(params: Params, dataset: str, fold: int, stage: str) -> Path:
    """Where fine-tuning ``stage`` of a fold writes its ``best``/``last`` weights."""
    return pipeline.path(f"finetune_{stage}", "model", params, ds=dataset, fold=fold)


def checkpoint_metadata(params: Params, target: Task, stage: str, fold: int,
                        epoch: int) -> dict[str, str]:
    """Safetensors metadata of a fine-tuned checkpoint: its epoch and the model card that
    ``avfmae predict`` reads (task, input geometry, preprocessing of the training data)."""
    card = model_card(params, target, stage=stage, fold=fold)
    return {"epoch": str(epoch), **card.to_metadata()}


def _write_outputs(params: Params, dataset: str, fold: int, stage: str, module: nn.Module,
                   target: Task, history: list[dict[str, float]], best_path: Path) -> None:
    out = model_dir(params, dataset, fold, stage)
    key = f"val_{target.selection_metric}"
    best = max(history, key=lambda h: h[key])
    out.mkdir(parents=True, exist_ok=True)
    (out / "best.safetensors").write_bytes(best_path.read_bytes())
    export_weights(module, out / "last.safetensors",
                   metadata=checkpoint_metadata(params, target, stage, fold, len(history) - 1))
    selection = {
        "stage": stage, "selection_metric": target.selection_metric,
        "best_epoch": int(best["epoch"]), "epochs": len(history),
        "val_best": {k.removeprefix("val_"): v for k, v in best.items() if k.startswith("val_")},
        "val_last": {k.removeprefix("val_"): v for k, v in history[-1].items()
                     if k.startswith("val_")},
    }
    atomic_write_text(pipeline.path(f"finetune_{stage}", "selection", params, ds=dataset,
                                    fold=fold), json.dumps(selection, indent=2) + "\n")
    log.info("%s %s fold %d: best epoch %d (%s %.4f)", stage, dataset, fold, best["epoch"],
             key, best[key])
