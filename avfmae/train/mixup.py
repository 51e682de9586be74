"""Mixup / CutMix for audio-visual clips with label smoothing (docs/model.md §6.4, F12).

Batch mode as in the published recipe: one λ per batch, sample ``i`` is mixed with sample
``B−1−i`` (the flipped batch). With probability ``switch_prob`` CutMix is used instead of Mixup.

* **Mixup**: ``x ← λ·x + (1−λ)·flip(x)`` for video and — with ``mix_audio`` (default) — audio,
  with the same λ.
* **CutMix**: one box for all frames of the video (box side ``√(1−λ)`` of H and W, centre
  uniform, clipped to the frame; λ is then corrected to the kept area). With ``mix_audio`` the
  audio gets the **same proportion** as a contiguous time segment: ``round((1−λ)·T_audio)``
  fbank frames, start uniform, taken from the partner clip (all mel bins). This keeps the label
  weights honest for both modalities (docs/model.md F12).
* ``mix_audio=False`` reproduces the published behaviour: audio untouched, labels mixed.

Targets are smoothed one-hot vectors (``1 − ε + ε/K`` on the class, ``ε/K`` elsewhere) mixed with
the same λ; train with :func:`avfmae.train.losses.soft_target_cross_entropy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["smooth_one_hot", "MixupCutmix", "joint_levels", "level_marginals"]


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``(B, K)`` float targets: ``1 − smoothing + smoothing/K`` on the label, ``smoothing/K``
    elsewhere."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def joint_levels(levels: torch.Tensor, num_levels: int) -> torch.Tensor:
    """``(B,)`` one class per combination of a levelled task's ``levels (B, D)`` (row-major:
    the last dimension varies fastest), to mix as a ``num_levels**D``-class label."""
    weights = num_levels ** torch.arange(levels.shape[1] - 1, -1, -1, device=levels.device)
    return (levels.long() * weights).sum(1)


def level_marginals(soft: torch.Tensor, dimensions: int, num_levels: int) -> torch.Tensor:
    """``(B, D, L)`` per-dimension targets from mixed joint targets ``soft (B, L**D)``.

    Mixing and smoothing are linear, so each marginal is exactly that dimension's mixed,
    ``ε``-smoothed one-hot target (``1 − ε + ε/L`` on the level, ``ε/L`` elsewhere).
    """
    b = soft.shape[0]
    grid = soft.view(b, *([num_levels] * dimensions))
    return torch.stack([grid.movedim(d + 1, 1).reshape(b, num_levels, -1).sum(-1)
                        for d in range(dimensions)], dim=1)


class MixupCutmix:
    """Mix a batch ``(video (B,C,T,H,W), audio (B,1,T_a,F) | None, labels (B,))``.

    ``__call__`` returns ``(video, audio, soft_targets (B, K))`` as new tensors; ``last_lam`` and
    ``last_mode`` (``"mixup"``, ``"cutmix"`` or ``"none"``) describe the last call. Randomness
    comes from a NumPy ``Generator`` seeded with ``seed`` (use a per-rank seed); its state is in
    :meth:`state_dict` (plain types).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        prob: float = 1.0,
        label_smoothing: float = 0.1,
        mix_audio: bool = True,
        seed: int = 0,
    ) -> None:
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.prob = switch_prob, prob
        self.label_smoothing, self.mix_audio = label_smoothing, mix_audio
        self.rng = np.random.default_rng(seed)
        self.last_lam, self.last_mode = 1.0, "none"

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def _draw(self) -> tuple[str, float]:
        if not self.active or self.rng.random() >= self.prob:
            return "none", 1.0
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or self.rng.random() < self.switch_prob
        )
        if use_cutmix:
            return "cutmix", float(self.rng.beta(self.cutmix_alpha, self.cutmix_alpha))
        return "mixup", float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))

    def _box(self, h: int, w: int, lam: float) -> tuple[int, int, int, int, float]:
        cut = np.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return int(y0), int(y1), int(x0), int(x1), lam

    def __call__(
        self, video: torch.Tensor, audio: torch.Tensor | None, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        mode, lam = self._draw()
        if mode == "mixup":
            video = video * lam + video.flip(0) * (1.0 - lam)
            if audio is not None and self.mix_audio:
                audio = audio * lam + audio.flip(0) * (1.0 - lam)
        elif mode == "cutmix":
            y0, y1, x0, x1, lam = self._box(video.shape[-2], video.shape[-1], lam)
            video = video.clone()
            video[..., y0:y1, x0:x1] = video.flip(0)[..., y0:y1, x0:x1]
            if audio is not None and self.mix_audio:
                t = audio.shape[2]
                length = int(round((1.0 - lam) * t))
                start = int(self.rng.integers(0, t - length + 1))
                audio = audio.clone()
                audio[:, :, start:start + length] = audio.flip(0)[:, :, start:start + length]
        self.last_mode, self.last_lam = mode, lam
        y = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        return video, audio, y * lam + y.flip(0) * (1.0 - lam)

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
