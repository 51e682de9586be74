"""Mixed precision: one :class:`Precision` per run, and the optimizer step that goes with it.

Config values (``pretrain.amp``, ``finetune.amp``):

* ``auto`` — bf16 autocast on a GPU that supports it, else fp16 + ``GradScaler``; on the CPU
  bf16 where it has bf16 matrix units (Intel AMX), else fp32: without them bf16 matrix products
  are no faster than fp32 ones (``docs/speed.md``);
* ``off`` — fp32;
* ``bf16`` — bf16 autocast (CPU or GPU), no scaler;
* ``fp16`` — fp16 autocast with a dynamic ``GradScaler``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

# how a setting resolves is machine knowledge, shared with the report (avfmae/machine.py)
from avfmae.machine import (AMP_MODES, cpu_has_bf16_matrix_units, precision_name,
                            resolve_amp_dtype)

__all__ = ["AMP_MODES", "Precision", "cpu_has_bf16_matrix_units", "optimizer_step",
           "resolve_amp_dtype"]


@dataclass
class Precision:
    """Autocast settings and (for fp16) the gradient scaler."""

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def create(cls, mode: str, device: torch.device | str) -> Precision:
        dev = torch.device(device)
        dtype = resolve_amp_dtype(mode, dev)
        scaler = torch.amp.GradScaler(dev.type) if dtype == torch.float16 else None
        return cls(dev.type, dtype, scaler)

    @property
    def name(self) -> str:
        return precision_name(self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context manager for the forward pass (a no-op in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    precision: Precision | None = None,
    *,
    parameters: Iterable[torch.nn.Parameter] | None = None,
    clip_grad: float = 0.0,
) -> torch.Tensor | None:
    """Backward, optional grad-norm clipping, optimizer step and ``zero_grad``.

    With an fp16 scaler the loss is scaled, gradients unscaled before clipping, and a step with
    non-finite gradients is skipped by the scaler. ``parameters`` default to the optimizer's.
    Returns the total grad norm before clipping (a tensor) when ``clip_grad > 0``, else ``None``.
    """
    scaler = precision.scaler if precision is not None else None
    params = list(parameters) if parameters is not None else [
        p for g in optimizer.param_groups for p in g["params"]
    ]
    norm = None
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip_grad)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
