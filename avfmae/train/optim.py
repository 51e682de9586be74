"""AdamW parameter groups, layer-wise LR decay and the per-step warm-up + cosine schedule.

docs/model.md §5.7 (pretraining: no layer decay, 1-D params and biases undecayed,
lr = base·batch/256, linear warm-up from 0 then cosine to ``min_lr``) and §6.3 (fine-tuning:
layer decay 0.75 with scale ``decay^(num_layers + 1 − layer_id)``).

No-weight-decay rule (docs/model.md F19): a parameter is not decayed when it is 1-D (biases,
norm weights, layer weights…) or when its *own* name — the last dotted component, not the full
path — contains one of :data:`NO_DECAY_KEYS` (``pos_embed``, ``region_tokens``, ``mask_token``,
``layer_weights``, ``cls_token``). So ``encoder.lg_region_tokens`` and
``decoder.mask_token_audio`` are undecayed wherever they sit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "NO_DECAY_KEYS",
    "no_weight_decay",
    "param_groups",
    "build_optimizer",
    "scaled_lr",
    "lr_at",
    "WarmupCosineSchedule",
]

NO_DECAY_KEYS = ("pos_embed", "region_tokens", "mask_token", "layer_weights", "cls_token")


def no_weight_decay(name: str, param: torch.Tensor, keys: Iterable[str] = NO_DECAY_KEYS) -> bool:
    """True when ``param`` (called ``name``) should get no weight decay (see module doc)."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or leaf == "bias" or any(k in leaf for k in keys)


def param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    *,
    weight_decay: float,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    layer_decay: float = 1.0,
    no_decay_keys: Iterable[str] = NO_DECAY_KEYS,
) -> list[dict[str, Any]]:
    """AdamW parameter groups; frozen parameters (``requires_grad=False``) are left out.

    Args:
        named_parameters: e.g. ``model.named_parameters()``.
        weight_decay: applied to every decayed group.
        layer_id: ``name -> int`` in ``[0, num_layers + 1]``; with ``layer_decay < 1`` the group
            of layer ``i`` gets ``lr_scale = layer_decay ** (num_layers + 1 - i)``.
        num_layers: required with ``layer_id``.

    Returns:
        a list of dicts ``{"params", "names", "weight_decay", "lr_scale", "layer_id"}``, one
        per (layer, decay/no-decay) pair, in first-seen order. ``lr_scale`` is read by
        :class:`WarmupCosineSchedule`.
    """
    keys = tuple(no_decay_keys)
    if layer_id is not None and num_layers is None:
        raise ValueError("layer_id needs num_layers")
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        decay = not no_weight_decay(name, p, keys)
        lid = layer_id(name) if layer_id is not None else 0
        scale = layer_decay ** (num_layers + 1 - lid) if layer_id is not None else 1.0
        group = groups.setdefault(
            (lid, decay),
            {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": scale, "layer_id": lid},
        )
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())


def build_optimizer(
    model: torch.nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] | list[float] = (0.9, 0.999),
    eps: float = 1e-8,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    layer_decay: float = 1.0,
    no_decay_keys: Iterable[str] = NO_DECAY_KEYS,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` of ``model``; each group starts at ``lr · lr_scale``."""
    groups = param_groups(
        model.named_parameters(), weight_decay=weight_decay, layer_id=layer_id,
        num_layers=num_layers, layer_decay=layer_decay, no_decay_keys=no_decay_keys,
    )
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps)


def scaled_lr(base_lr: float, total_batch: int) -> float:
    """``base_lr · total_batch / 256`` (total batch = per-process batch × world size)."""
    return base_lr * total_batch / 256


def lr_at(step: int, *, peak_lr: float, min_lr: float, warmup_steps: int,
          total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based).

    Linear warm-up from 0 (``peak·step/warmup_steps`` for ``step < warmup_steps``), then cosine
    from ``peak_lr`` at ``warmup_steps`` to ``min_lr`` at ``total_steps`` (held after it).
    """
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineSchedule:
    """Sets every group's ``lr = lr_at(step) · group["lr_scale"]``; checkpointable.

    Construction applies step 0; call :meth:`step` after each optimizer step. ``state_dict``
    holds plain numbers only.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, peak_lr: float, min_lr: float,
                 warmup_steps: int, total_steps: int) -> None:
        self.optimizer = optimizer
        self.peak_lr, self.min_lr = float(peak_lr), float(min_lr)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.last_step = 0
        self._apply()

    def lr_at(self, step: int) -> float:
        return lr_at(step, peak_lr=self.peak_lr, min_lr=self.min_lr,
                     warmup_steps=self.warmup_steps, total_steps=self.total_steps)

    @property
    def lr(self) -> float:
        """The unscaled learning rate of the current step."""
        return self.lr_at(self.last_step)

    def _apply(self) -> None:
        lr = self.lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    def step(self) -> float:
        """Advance one step and return the new unscaled learning rate."""
        self.last_step += 1
        self._apply()
        return self.lr

    def state_dict(self) -> dict[str, float | int]:
        return {"last_step": self.last_step, "peak_lr": self.peak_lr, "min_lr": self.min_lr,
                "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.peak_lr, self.min_lr = float(state["peak_lr"]), float(state["min_lr"])
        self.warmup_steps, self.total_steps = int(state["warmup_steps"]), int(state["total_steps"])
        self.last_step = int(state["last_step"])
        self._apply()
