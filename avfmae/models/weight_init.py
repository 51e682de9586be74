"""Truncated-normal initialisation by the inverse-CDF method (the published models' init).

The pinned torch's own ``nn.init.trunc_normal_`` (2.14) draws by rejection, so the same seed gives
other numbers. This one draws what timm's, and so the published code's, does: fresh models (and
every figure made from a seed) stay what they were, without importing timm in the model code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["trunc_normal_"]


def _normal_cdf(x: float) -> float:
    return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0


@torch.no_grad()
def trunc_normal_(tensor: Tensor, std: float = 1.0, mean: float = 0.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:
    """Fill ``tensor`` in place from N(``mean``, ``std``²) truncated to [``a``, ``b``] (absolute
    bounds, not in units of ``std``)."""
    low, high = _normal_cdf((a - mean) / std), _normal_cdf((b - mean) / std)
    tensor.uniform_(2 * low - 1, 2 * high - 1)
    tensor.erfinv_()
    tensor.mul_(std * math.sqrt(2.0)).add_(mean)
    return tensor.clamp_(min=a, max=b)
