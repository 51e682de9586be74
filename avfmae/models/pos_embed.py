"""Fixed 1-D sinusoid position tables (not parameters, never in a state dict)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sinusoid_table"]


def sinusoid_table(num_positions: int, dim: int) -> Tensor:
    """Transformer sinusoid table over a flat token index, shape (num_positions, dim), float32.

    Column ``j`` holds ``sin`` (even j) or ``cos`` (odd j) of ``p / 10000^(2⌊j/2⌋/dim)``.
    Computed in float64 and then cast, as published: a float32 computation drifts by ~1e-6.
    """
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    exponent = 2 * torch.div(torch.arange(dim), 2, rounding_mode="floor").double() / dim
    angle = position / torch.pow(10000.0, exponent)
    table = torch.empty(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()
