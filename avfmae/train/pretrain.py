"""The pretrain stage: self-supervised audio-visual masked autoencoding (docs/model.md §5).

Reads the unlabeled clips of every ``data.pretrain_pool`` dataset's clip store, trains the
pretraining model of ``model.scale`` with dual masking, the reconstruction losses, the
hierarchical contrastive loss and the second masked view's term — or, with
``pretrain.modality`` video or audio, that modality's masked autoencoder alone (its masks, its
reconstruction loss and, for video, the second view) — and writes:

- ``models/pretrain/encoder.safetensors`` — encoders + fusion (those the model has), what
  fine-tuning loads;
- ``metrics/pretrain.json`` — first/last epoch losses, throughput;
- ``plots/pretrain/`` — reconstruction pictures;
- ``live/pretrain/`` — every loss term and the learning rate per step, written live
  (:mod:`avfmae.curves`);
- ``runs/pretrain/`` — resumable checkpoints while it runs, kept across an interruption only
  for a rerun with the same settings and the same clips; removed when the stage finishes.

Runs as one process or under ``torchrun`` (DDP, gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from avfmae.config import Params, PretrainConfig
from avfmae.data.clips import ClipDataset, load_store
from avfmae.errors import UserError
from avfmae.io import atomic_write_text, content_digest
from avfmae.masking import sample_masks, sample_view_masks
from avfmae.models import AVFPretrain, create_model
from avfmae import pipeline
from avfmae.train.amp import Precision
from avfmae.train.checkpoint import export_weights
from avfmae.train.distributed import (
    ResumableDistributedSampler,
    ResumableLoader,
    cleanup_distributed,
    init_distributed,
    is_main_process,
    to_device,
)
from avfmae.train.loop import Loop, finish_run, prepare_run_dir
from avfmae.train.losses import pretraining_losses
from avfmae.train.optim import WarmupCosineSchedule, build_optimizer, scaled_lr
from avfmae.train.seeding import seed_everything
from avfmae.train.visualize import save_reconstructions

log = logging.getLogger(__name__)



def pool_rows(params: Params) -> pd.DataFrame:
    """Unlabeled clips of every pretraining-pool dataset's clip store."""
    frames = []
    for ds in params.data.pretrain_pool:
        rows = load_store(pipeline.path("preprocess", "clips", params, ds=ds))
        frames.append(rows[~rows["labeled"].astype(bool)])
    rows = pd.concat(frames, ignore_index=True)
    if rows.empty:
        raise UserError(f"data.pretrain_pool {params.data.pretrain_pool} has no unlabeled clips; "
                        "add a pool such as voxceleb2 or folder")
    return rows


def build_pretrain_model(params: Params) -> AVFPretrain:
    """The pretraining model of ``model.scale`` and ``pretrain.modality`` with the masking's
    region partition."""
    cfg = params.pretrain
    partition = "rank" if params.model.reference_compatible or not cfg.window_masking \
        else "window"
    return create_model(params.model.scale, pretrain=True, partition=partition,
                        reference_compatible=params.model.reference_compatible,
                        contrastive_temperature=cfg.contrastive_temperature,
                        modality=cfg.modality, **params.model.overrides)


def run_settings(params: Params) -> dict[str, Any]:
    """What determines the result (not worker counts or checkpoint frequency)."""
    cfg = dataclasses.asdict(params.pretrain)
    for key in ("num_workers", "checkpoint_every_steps", "compile"):
        cfg.pop(key)
    # every file of each clip store: the manifest alone stays identical when e.g. a new crf
    # re-encodes the faces under the same names
    stores = content_digest(pipeline.path("preprocess", "clips", params, ds=ds)
                            for ds in params.data.pretrain_pool)
    return {"model": dataclasses.asdict(params.model), "pretrain": cfg, "inputs": stores}


def pretrain(params: Params, resume: str = "auto") -> Path:
    """Run (or resume) pretraining; returns the exported encoder path."""
    cfg = params.pretrain
    run_dir = pipeline.path("pretrain", "run", params)
    encoder = pipeline.path("pretrain", "encoder", params)
    info = init_distributed()
    seed_everything(cfg.seed + info.rank)
    dataset = ClipDataset(pool_rows(params), "pretrain", seed=cfg.seed)
    sampler = ResumableDistributedSampler(dataset, seed=cfg.seed, drop_last=True)
    batch = min(cfg.batch_size, sampler.num_samples)
    if batch < 1:
        raise UserError(f"the pool has {len(dataset)} clips: too few for {info.world_size} "
                        "processes")
    loader = ResumableLoader(dataset, sampler=sampler, batch_size=batch, seed=cfg.seed,
                             num_workers=cfg.num_workers, persistent_workers=cfg.num_workers > 0)
    module = build_pretrain_model(params).to(info.device)
    model: nn.Module = module
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(module)
    if cfg.compile:
        model = torch.compile(model)
    steps_per_epoch = sampler.num_samples // batch
    peak = scaled_lr(cfg.base_lr, batch * info.world_size)
    optimizer = build_optimizer(module, lr=peak, weight_decay=cfg.weight_decay,
                                betas=tuple(cfg.betas))
    schedule = WarmupCosineSchedule(
        optimizer, peak_lr=peak, min_lr=cfg.min_lr,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        total_steps=cfg.epochs * steps_per_epoch)
    loop = Loop(
        model=model, module=module, loader=loader, sampler=sampler, optimizer=optimizer,
        schedule=schedule, precision=Precision.create(cfg.amp, info.device),
        checkpoints=prepare_run_dir(run_dir, run_settings(params), resume),
        epochs=cfg.epochs, clip_grad=cfg.clip_grad, every_steps=cfg.checkpoint_every_steps,
        desc="pretrain", curves=pipeline.path("pretrain", "curves_summary", params).parent,
        curve_every="step")
    loop.resume(resume)
    log.info("pretraining %s %s (%.2fM params) on %d clips, %d steps/epoch, batch %d x %d, "
             "lr %.3g", params.model.scale, cfg.modality,
             sum(p.numel() for p in module.parameters()) / 1e6,
             len(dataset), steps_per_epoch, batch, info.world_size, peak)

    second_view = uses_second_view(cfg, module)

    def step(batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        masks = {k: v.to(info.device) for k, v in
                 sample_masks(params.pretrain, epoch, batch["index"]).items()}
        video, audio = model_inputs(module, batch, info.device)
        view = sample_view_masks(cfg, epoch, batch["index"]).to(info.device) \
            if second_view else None
        out = model(video, audio, masks["encoder_mask_video"], masks["encoder_mask_audio"],
                    masks["decoder_mask_video"], masks["decoder_mask_audio"],
                    video_view_mask=view)
        losses = pretraining_losses(
            video, audio, masks, out.video_recon, out.audio_recon, out.video_embeddings,
            out.audio_embeddings, contrastive_weight=cfg.contrastive_weight,
            temperature=cfg.contrastive_temperature, gather_negatives=cfg.gather_negatives,
            video_view=out.video_view_embedding, view_weight=cfg.view_contrastive_weight,
            view_temperature=cfg.view_contrastive_temperature)
        return {"loss": losses.pop("loss_total"), **losses}

    started = time.perf_counter()
    history = loop.fit(step)
    elapsed = time.perf_counter() - started
    if is_main_process():
        export_weights(encoder_state(module), encoder,
                       metadata={"scale": params.model.scale, "kind": "avfmae-pretrain",
                                 "modality": cfg.modality})
        _write_outputs(params, module, dataset, history, loop.steps, elapsed)
        finish_run(run_dir)
    cleanup_distributed()
    return encoder


def uses_second_view(cfg: PretrainConfig, module: AVFPretrain) -> bool:
    """Whether pretraining encodes a second masked view of the video (docs/model.md §5.6):
    a positive weight and a model with a video encoder."""
    return cfg.view_contrastive_weight > 0 and module.has("video")


def model_inputs(module: AVFPretrain, batch: dict[str, Any],
                 device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(video, audio) of a batch on ``device``; None for a modality the model does not encode
    (the clip store always holds both)."""
    return tuple(to_device(batch[name], device) if module.has(name) else None
                 for name in ("video", "audio"))


def encoder_state(module: AVFPretrain) -> dict[str, torch.Tensor]:
    """Encoders and fusion: what fine-tuning loads (the decoders are pretraining-only)."""
    return {k: v for k, v in module.state_dict().items()
            if not k.startswith(("video_decoder.", "audio_decoder."))}


def _write_outputs(params: Params, module: AVFPretrain, dataset: ClipDataset,
                   history: list[dict[str, float]], steps: list[dict[str, float]],
                   elapsed: float) -> None:
    save_reconstructions(params, module, dataset, pipeline.path("pretrain", "figures", params))
    first, last = history[0], history[-1]
    metrics = {
        "epochs": len(history), "steps": len(steps), "clips": len(dataset),
        "first_epoch": {k: v for k, v in first.items() if k != "epoch"},
        "last_epoch": {k: v for k, v in last.items() if k != "epoch"},
        "wall_s_this_run": round(elapsed, 1),
    }
    atomic_write_text(pipeline.path("pretrain", "summary", params),
                      json.dumps(metrics, indent=2) + "\n")
