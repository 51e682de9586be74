"""Training losses as plain functions over tensors (docs/model.md §5.4–5.5, §6.4, §7).

Pretraining
    :func:`video_targets`, :func:`audio_targets` — per-patch normalised reconstruction targets
    over the whole token grid; :func:`reconstruction_loss` — mean squared error over positions
    that are both decoded and hidden from the encoder (``custom_mae_loss``);
    :func:`hierarchical_contrastive_loss` — HCMCL, optionally with negatives gathered across
    ranks; the second-view term (the same InfoNCE between two masked views of each clip's video);
    :func:`pretraining_losses` — all of it for one batch.

Fine-tuning
    :func:`soft_target_cross_entropy`, :func:`ccc_loss`, :func:`regression_loss`.

Mask convention (as :mod:`avfmae.masking`): ``bool (B, N)``, True = masked. ``decoder_mask``
True = position **not** reconstructed; a model's reconstruction holds one row per decoded
position in ascending patch order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange

from avfmae.train.distributed import all_gather_with_grad, get_rank, get_world_size

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "video_targets",
    "audio_targets",
    "select_decoded",
    "reconstruction_loss",
    "contrastive_loss",
    "hierarchical_contrastive_loss",
    "contrastive_loss_from_logits",
    "pretraining_losses",
    "soft_target_cross_entropy",
    "ccc_loss",
    "regression_loss",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Reconstruction targets
# ----------------------------------------------------------------------------------------------


def _normalise_patches(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) / (std_unbiased + eps)`` over dim -2 (pixels of a patch), per channel."""
    mean = x.mean(dim=-2, keepdim=True)
    std = x.var(dim=-2, unbiased=True, keepdim=True).sqrt()
    return (x - mean) / (std + eps)


def video_targets(
    video: torch.Tensor,
    *,
    tubelet: int = 2,
    patch: int = 16,
    frame_diff: bool = True,
    unnormalise: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Video targets for every tubelet patch: ``(B, N, tubelet·patch²·C)``, e.g. (B, 800, 1536).

    ``video`` is ``(B, C, T, H, W)`` as the model sees it (ImageNet-normalised when
    ``unnormalise``). Steps: back to [0, 1]; cut into ``(tubelet·patch·patch, C)`` patches in
    token order ``t·(H/p)·(W/p) + h·(W/p) + w``; normalise per patch and channel with the
    unbiased std + ``eps``; with ``frame_diff``, every frame after the first of a tubelet is
    replaced by its difference to the previous (normalised) frame; flatten ``(p0 p1 p2 c)``.
    Computed in float32 without gradient.
    """
    with torch.no_grad():
        x = video.float()
        c = x.shape[1]
        if unnormalise:
            m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, c, 1, 1, 1)
            s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, c, 1, 1, 1)
            x = x * s + m
        x = rearrange(x, "b c (nt p0) (nh p1) (nw p2) -> b (nt nh nw) (p0 p1 p2) c",
                      p0=tubelet, p1=patch, p2=patch)
        x = _normalise_patches(x, eps)
        if frame_diff and tubelet > 1:
            x = rearrange(x, "b n (p0 p12) c -> b n p0 p12 c", p0=tubelet)
            x = torch.cat([x[:, :, :1], x[:, :, 1:] - x[:, :, :-1]], dim=2)
        return x.flatten(2)


def audio_targets(audio: torch.Tensor, *, patch: int = 16, eps: float = 1e-6) -> torch.Tensor:
    """Audio targets: ``(B, N, patch²·C)``, e.g. (B, 128, 256) from a (B, 1, 256, 128) fbank.

    Patches in token order ``tt·(F/p) + f``, each normalised (unbiased std + ``eps``), flattened
    ``(p1 p2 c)``. Float32, no gradient.
    """
    with torch.no_grad():
        x = rearrange(audio.float(), "b c (nh p1) (nw p2) -> b (nh nw) (p1 p2) c",
                      p1=patch, p2=patch)
        return _normalise_patches(x, eps).flatten(2)


def select_decoded(x: torch.Tensor, decoder_mask: torch.Tensor) -> torch.Tensor:
    """Rows of ``x (B, N, ...)`` at the decoded positions (``~decoder_mask``), ascending order.

    Returns ``(B, K, ...)``; every sample must decode the same number ``K`` of positions.
    """
    keep = ~decoder_mask
    k = int(keep[0].sum())
    return x[keep].reshape(x.shape[0], k, *x.shape[2:])


# ----------------------------------------------------------------------------------------------
# Reconstruction loss
# ----------------------------------------------------------------------------------------------


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    decoder_mask: torch.Tensor,
    encoder_mask: torch.Tensor,
    *,
    global_denominator: bool = True,
) -> torch.Tensor:
    """Masked-autoencoder loss over positions both decoded and hidden from the encoder.

    Args:
        pred: ``(B, K, P)`` reconstructions of the decoded positions, ascending patch order.
        target: ``(B, N, P)`` targets over the whole grid (:func:`video_targets` /
            :func:`audio_targets`).
        decoder_mask: ``bool (B, N)``, True = not decoded; ``K = (~decoder_mask).sum(1)``.
        encoder_mask: ``bool (B, N)``, True = hidden from the encoder.
        global_denominator: under DDP, divide by the all-reduced count of counted positions
            (times world size), so that the mean over ranks — what DDP's gradient averaging
            optimises — equals the loss over the global batch. False = per-rank mean (published).

    Returns:
        scalar ``Σ_i e_i·m_i / Σ_i m_i`` with ``e_i`` the mean squared error of decoded position
        ``i`` and ``m_i = encoder_mask[i]``; 0 (with gradient) when nothing is counted.
    """
    tgt = select_decoded(target, decoder_mask).float()
    weight = select_decoded(encoder_mask, decoder_mask).float()
    err = (pred.float() - tgt).pow(2).mean(dim=-1)
    numerator = (err * weight).sum()
    denominator = weight.sum().detach()
    world = get_world_size()
    if global_denominator and world > 1:
        denominator = denominator.clone()
        torch.distributed.all_reduce(denominator)
        denominator = denominator / world
    # nothing counted → numerator is 0 too; the clamp avoids 0/0 without a device sync
    return numerator / denominator.clamp_min(1e-12)


# ----------------------------------------------------------------------------------------------
# Hierarchical audio-visual contrastive loss (HCMCL)
# ----------------------------------------------------------------------------------------------


def _pooled(x: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` from pooled ``(B, C)`` or token ``(B, N, C)`` features (token mean)."""
    if x.dim() == 3:
        x = x.mean(dim=1)
    if x.dim() != 2:
        raise ValueError(f"expected (B, C) or (B, N, C) features, got shape {tuple(x.shape)}")
    return x


def contrastive_loss(
    video: torch.Tensor,
    audio: torch.Tensor,
    temperature: float = 0.07,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between paired video and audio features of one level.

    Args:
        video, audio: ``(B, C)`` pooled or ``(B, N, C)`` token features (token mean taken).
        temperature: τ; logits = ``v·aᵀ/τ`` of L2-normalised features.
        gather: under DDP, use every rank's samples as negatives (all-gather with gradient;
            each rank must have the same batch size). False = per-rank negatives (published).

    Returns:
        scalar ``½[CE(logits, I) + CE(logitsᵀ, I)]``, the mean over this rank's samples. Under
        DDP with ``gather`` the mean over ranks equals the single-process loss on the global
        batch, and so do the averaged gradients.
    """
    with torch.autocast(device_type=video.device.type, enabled=False):  # fp32 logits
        v = F.normalize(_pooled(video.float()), dim=-1)
        a = F.normalize(_pooled(audio.float()), dim=-1)
        if gather and get_world_size() > 1:
            v_all, a_all = all_gather_with_grad(v), all_gather_with_grad(a)
            offset = get_rank() * v.shape[0]
        else:
            v_all, a_all, offset = v, a, 0
        labels = torch.arange(v.shape[0], device=v.device) + offset
        logits_v = v @ a_all.t() / temperature
        logits_a = a @ v_all.t() / temperature
        return 0.5 * (F.cross_entropy(logits_v, labels) + F.cross_entropy(logits_a, labels))


def hierarchical_contrastive_loss(
    video_levels: Sequence[torch.Tensor],
    audio_levels: Sequence[torch.Tensor],
    temperature: float = 0.07,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """HCMCL: :func:`contrastive_loss` summed over levels (one per exported encoder layer).

    ``video_levels[l]``/``audio_levels[l]``: ``(B, C)`` or ``(B, N, C)`` features of level l.
    """
    if len(video_levels) != len(audio_levels) or not video_levels:
        raise ValueError("need the same, non-zero number of video and audio levels")
    return sum(
        contrastive_loss(v, a, temperature, gather=gather)
        for v, a in zip(video_levels, audio_levels)
    )


def contrastive_loss_from_logits(logits_per_video: Sequence[torch.Tensor]) -> torch.Tensor:
    """HCMCL from precomputed per-level logits ``(B, B)`` (video rows × audio columns)."""
    total = 0.0
    for logits in logits_per_video:
        labels = torch.arange(logits.shape[0], device=logits.device)
        total = total + 0.5 * (
            F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)
        )
    return total


def pretraining_losses(
    video: torch.Tensor | None,
    audio: torch.Tensor | None,
    masks: dict[str, torch.Tensor],
    video_recon: torch.Tensor | None,
    audio_recon: torch.Tensor | None,
    video_levels: Sequence[torch.Tensor],
    audio_levels: Sequence[torch.Tensor],
    *,
    contrastive_weight: float = 0.0025,
    temperature: float = 0.07,
    gather_negatives: bool = True,
    frame_diff: bool = True,
    video_view: torch.Tensor | None = None,
    view_weight: float = 0.0,
    view_temperature: float = 0.1,
) -> dict[str, torch.Tensor]:
    """All pretraining losses of a batch (docs/model.md §5.4).

    Args:
        video: ``(B, 3, 16, 160, 160)`` normalised input; audio: ``(B, 1, 256, 128)``.
        masks: :func:`avfmae.masking.dual_masks` output.
        video_recon: ``(B, K_v, 1536)``; audio_recon: ``(B, K_a, 256)`` (decoded positions).
            None for a modality a one-modality model does not reconstruct.
        video_levels, audio_levels: per-level encoder features for HCMCL.
        video_view: ``(B, C)`` pooled last-level features of a second masked view of the video
            (docs/model.md §5.6), contrasted with ``video_levels[-1]`` at ``view_temperature``
            with weight ``view_weight``; None = no such term.

    Returns:
        ``{"loss_video", "loss_audio", "loss_hcmcl", "loss_total"}`` with
        ``loss_total = loss_video + loss_audio + contrastive_weight·loss_hcmcl``. With one
        modality: ``{"loss_<modality>", "loss_total"}``, the total being that reconstruction
        loss alone (there is no second stream to contrast with). With ``video_view`` also
        ``"loss_view"``, added to the total times ``view_weight``.
    """
    losses: dict[str, torch.Tensor] = {}
    if video_recon is not None:
        losses["loss_video"] = reconstruction_loss(
            video_recon, video_targets(video, frame_diff=frame_diff),
            masks["decoder_mask_video"], masks["encoder_mask_video"],
        )
    if audio_recon is not None:
        losses["loss_audio"] = reconstruction_loss(
            audio_recon, audio_targets(audio),
            masks["decoder_mask_audio"], masks["encoder_mask_audio"],
        )
    if not losses:
        raise ValueError("nothing to reconstruct: both video_recon and audio_recon are None")
    total = sum(losses.values())
    if video_recon is not None and audio_recon is not None:
        losses["loss_hcmcl"] = hierarchical_contrastive_loss(
            video_levels, audio_levels, temperature, gather=gather_negatives
        )
        total = total + contrastive_weight * losses["loss_hcmcl"]
    if video_view is not None:
        losses["loss_view"] = contrastive_loss(video_levels[-1], video_view, view_temperature,
                                               gather=gather_negatives)
        total = total + view_weight * losses["loss_view"]
    return {**losses, "loss_total": total}


# ----------------------------------------------------------------------------------------------
# Fine-tuning losses
# ----------------------------------------------------------------------------------------------


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b Σ_k −target[b,k]·log_softmax(logits)[b,k]``; ``target (B, K)`` rows sum to 1.

    A levelled task's ``target (B, D, L)`` (one distribution over L levels per dimension) views
    ``logits (B, D·L)`` as ``(B, D, L)``: a softmax per dimension, and the loss is the mean over
    dimensions of their cross-entropies.
    """
    logits = logits.float().reshape(target.shape)
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 − CCC`` averaged over dimensions; ``pred``/``target`` ``(B,)`` or ``(B, D)``.

    CCC over the batch with population (1/n) moments:
    ``2·cov / (var_p + var_t + (μ_p − μ_t)²)``; ``eps`` keeps the all-constant case finite.
    """
    p = pred.float().reshape(pred.shape[0], -1)
    t = target.float().reshape(target.shape[0], -1)
    mp, mt = p.mean(0), t.mean(0)
    vp = (p - mp).pow(2).mean(0)
    vt = (t - mt).pow(2).mean(0)
    cov = ((p - mp) * (t - mt)).mean(0)
    ccc = 2 * cov / (vp + vt + (mp - mt).pow(2) + eps)
    return (1 - ccc).mean()


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "ccc") -> torch.Tensor:
    """DEA loss: ``"mse"`` (mean squared error) or ``"ccc"`` (:func:`ccc_loss`)."""
    if kind == "mse":
        return F.mse_loss(pred.float(), target.float())
    if kind == "ccc":
        return ccc_loss(pred, target)
    raise ValueError(f"unknown regression loss {kind!r}; choose 'mse' or 'ccc'")
