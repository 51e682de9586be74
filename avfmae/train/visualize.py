"""Pictures of what the pretrained model reconstructs: original, masked input, reconstruction.

Predictions are per-patch-normalised (and frame-differenced for video), so they are mapped back
to pixels with the true patch's mean and std, as MAE-style visualisations do. Grey marks
positions the encoder did not see and the decoder was not asked to reconstruct.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from avfmae.config import Params
from avfmae.data.clips import ClipDataset
from avfmae.io import pyplot, save_figure
from avfmae.masking import sample_masks
from avfmae.models import AVFPretrain, PretrainOutput
from avfmae.train.losses import IMAGENET_MEAN, IMAGENET_STD

GREY = 0.5
EPS = 1e-6


def _video_patches(video: torch.Tensor, t: int = 2, p: int = 16) -> torch.Tensor:
    """(3, T, H, W) in [0, 1] → (N, t, p, p, 3) tubelet patches in token order."""
    c, T, H, W = video.shape
    x = video.reshape(c, T // t, t, H // p, p, W // p, p)
    return x.permute(1, 3, 5, 2, 4, 6, 0).reshape(-1, t, p, p, c)


def _video_from_patches(patches: torch.Tensor, T: int, H: int, W: int, p: int = 16) -> torch.Tensor:
    t = patches.shape[1]
    x = patches.reshape(T // t, H // p, W // p, t, p, p, 3)
    return x.permute(6, 0, 3, 1, 4, 2, 5).reshape(3, T, H, W)


def _denormalise(pred: torch.Tensor, true: torch.Tensor, frame_diff: bool) -> torch.Tensor:
    """pred (K, t, p, p, c) in target units → pixels, with ``true`` (K, t, p, p, c) stats.

    The frame-difference target holds frame 0 then successive differences; a cumulative sum
    over the tubelet's frames undoes it.
    """
    flat = true.reshape(true.shape[0], -1, true.shape[-1])
    mean = flat.mean(1)[:, None, None, None, :]
    std = flat.var(1, unbiased=True).sqrt()[:, None, None, None, :] + EPS
    if frame_diff:
        pred = torch.cumsum(pred, dim=1)
    return (pred * std + mean).clamp(0, 1)


def video_panels(video: torch.Tensor, recon: torch.Tensor, decoded: torch.Tensor,
                 encoder_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Original, masked input and reconstruction of one clip, each (3, T, H, W) in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    original = (video * std + mean).clamp(0, 1)
    _, T, H, W = original.shape
    patches = _video_patches(original)
    visible = ~encoder_mask
    masked = torch.full_like(patches, GREY)
    masked[visible] = patches[visible]
    rebuilt = masked.clone()
    pred = recon.reshape(-1, *patches.shape[1:])
    rebuilt[decoded] = _denormalise(pred, patches[decoded], frame_diff=True)
    return (original, _video_from_patches(masked, T, H, W),
            _video_from_patches(rebuilt, T, H, W))


def audio_panels(audio: torch.Tensor, recon: torch.Tensor, decoded: torch.Tensor,
                 encoder_mask: torch.Tensor, p: int = 16) -> tuple[torch.Tensor, ...]:
    """Original, masked input and reconstruction of one fbank, each (time, mel)."""
    spec = audio[0]
    nt, nf = spec.shape[0] // p, spec.shape[1] // p
    patches = spec.reshape(nt, p, nf, p).permute(0, 2, 1, 3).reshape(-1, p, p, 1)
    low = float(spec.min())
    masked = torch.full_like(patches, low)
    masked[~encoder_mask] = patches[~encoder_mask]
    rebuilt = masked.clone()
    rebuilt[decoded] = _audio_denormalise(recon.reshape(-1, p, p, 1), patches[decoded])

    def unpatch(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(nt, nf, p, p).permute(0, 2, 1, 3).reshape(nt * p, nf * p)

    return spec, unpatch(masked), unpatch(rebuilt)


def _audio_denormalise(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    flat = true.reshape(true.shape[0], -1)
    mean = flat.mean(1)[:, None, None, None]
    std = flat.var(1, unbiased=True).sqrt()[:, None, None, None] + EPS
    return pred * std + mean


@torch.no_grad()
def save_reconstructions(params: Params, model: AVFPretrain, dataset: ClipDataset,
                         out_dir: Path, n_clips: int = 2) -> list[Path]:
    """``recon_video.png`` and ``recon_audio.png`` for the first ``n_clips`` pool clips (only
    the modality a one-modality model reconstructs)."""
    plt = pyplot()

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dataset.set_epoch(0)
    items = [dataset[i] for i in range(min(n_clips, len(dataset)))]
    video = torch.stack([it["video"] for it in items])
    audio = torch.stack([it["audio"] for it in items])
    masks = sample_masks(params.pretrain, 0, torch.tensor([it["index"] for it in items]))
    out = model(video.to(device) if model.has("video") else None,
                audio.to(device) if model.has("audio") else None,
                masks["encoder_mask_video"].to(device),
                masks["encoder_mask_audio"].to(device), masks["decoder_mask_video"].to(device),
                masks["decoder_mask_audio"].to(device))
    model.train(was_training)

    written = []
    if out.video_recon is not None:
        written.append(_video_figure(plt, items, video, out, masks, out_dir))
    if out.audio_recon is not None:
        written.append(_audio_figure(plt, items, audio, out, masks, out_dir))
    return written


def _video_figure(plt: Any, items: list[dict], video: torch.Tensor, out: PretrainOutput,
                  masks: dict[str, torch.Tensor], out_dir: Path) -> Path:
    frames = [0, 5, 10, 15]
    fig, axes = plt.subplots(3 * len(items), len(frames), figsize=(2 * len(frames),
                                                                    6 * len(items)))
    for b in range(len(items)):
        decoded = torch.zeros(masks["encoder_mask_video"].shape[1], dtype=torch.bool)
        decoded[out.video_decoded[b].cpu()] = True
        panels = video_panels(video[b], out.video_recon[b].float().cpu(), decoded,
                              masks["encoder_mask_video"][b])
        for row, (name, panel) in enumerate(zip(("original", "masked", "reconstructed"), panels)):
            for col, t in enumerate(frames):
                ax = axes[3 * b + row, col]
                ax.imshow(panel[:, t].permute(1, 2, 0).numpy())
                ax.set_axis_off()
                ax.set_title(f"{items[b]['clip_id']} {name} t={t}", fontsize=6)
    return save_figure(fig, out_dir / "recon_video.png", dpi=80)


def _audio_figure(plt: Any, items: list[dict], audio: torch.Tensor, out: PretrainOutput,
                  masks: dict[str, torch.Tensor], out_dir: Path) -> Path:
    fig, axes = plt.subplots(len(items), 3, figsize=(9, 3 * len(items)), squeeze=False)
    for b in range(len(items)):
        decoded = torch.zeros(masks["encoder_mask_audio"].shape[1], dtype=torch.bool)
        decoded[out.audio_decoded[b].cpu()] = True
        panels = audio_panels(audio[b], out.audio_recon[b].float().cpu(), decoded,
                              masks["encoder_mask_audio"][b])
        for col, (name, panel) in enumerate(zip(("original", "masked", "reconstructed"), panels)):
            ax = axes[b, col]
            ax.imshow(np.asarray(panel.T), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"{items[b]['clip_id']} {name}", fontsize=7)
            ax.set_xlabel("frame (10 ms)")
            ax.set_ylabel("mel bin")
    return save_figure(fig, out_dir / "recon_audio.png", dpi=80)
