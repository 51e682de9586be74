"""Token grids and their LG regions: which token goes to which region slot.

A modality's tokens form a grid — video (T, H, W) = (8, 10, 10), flat index ``t·100 + h·10 + w``;
audio (T, F) = (16, 8), flat index ``t·8 + f``. The grid is tiled by equal regions (video
(2, 5, 10), audio (4, 4)), 8 per modality, numbered in raster order over the region grid; inside
a region, slots are numbered in raster order too. Three partitions exist:

* **all tokens** (fine-tuning): every region holds all its ``S`` tokens — :meth:`window_order`;
* **published rank partition** (pretraining with tube / random masks): the ascending visible
  tokens are cut into equal consecutive chunks by rank only — :meth:`rank_layout`. For video the
  chunks are "first/last visible tokens of each tubelet slice", for audio groups of consecutive
  visible tokens; neither matches the real windows (docs/model.md §3.2);
* **window partition** (pretraining with window-aware masks, docs/model.md F3): every window
  keeps the same number of visible tokens and each visible token goes to its own window —
  :meth:`window_layout`.

A *layout* is a (B, R, S') tensor of flat token indices: the token placed in slot s of region r.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from avfmae.masking import region_layout

__all__ = ["RegionGrid"]


@dataclass(frozen=True)
class RegionGrid:
    """A token grid tiled by equal regions. ``grid`` and ``region`` have the same length (2 or 3);
    for 3-D grids the first axis is time."""

    grid: tuple[int, ...]
    region: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.grid) != len(self.region) or len(self.grid) not in (2, 3):
            raise ValueError(f"grid {self.grid} and region {self.region} must both be 2-D or 3-D")
        for g, r in zip(self.grid, self.region):
            if r <= 0 or g % r:
                raise ValueError(f"region {self.region} does not tile the token grid {self.grid}")

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def region_size(self) -> int:
        return math.prod(self.region)

    @property
    def num_regions(self) -> int:
        return self.num_tokens // self.region_size

    def window_order(self, device: torch.device | None = None) -> Tensor:
        """(R, S) flat token index of every slot when all tokens are present."""
        return region_layout(self.grid, self.region).to(device)

    def region_of_token(self, device: torch.device | None = None) -> Tensor:
        """(N,) region number of every flat token index."""
        order = self.window_order(device)
        out = torch.empty(self.num_tokens, dtype=torch.long, device=device)
        out[order.flatten()] = torch.arange(self.num_regions, device=device).repeat_interleave(
            self.region_size
        )
        return out

    def rank_order(self, num_visible: int, device: torch.device | None = None) -> Tensor:
        """(R, S') rank (position among the ascending visible tokens) placed in every slot by the
        published partition: ``(nt t nhw hw) → (nt nhw) (t hw)`` for 3-D grids (nt time chunks of
        t slices, nhw regions per chunk), ``(R hw) → R hw`` for 2-D grids."""
        R = self.num_regions
        if len(self.grid) == 3:
            nt, t = self.grid[0] // self.region[0], self.region[0]
        else:
            nt, t = 1, 1
        nhw = R // nt
        if num_visible % (nt * t * nhw):
            raise ValueError(
                f"{num_visible} visible tokens cannot be split into {R} regions by rank: the "
                f"count must be a multiple of {nt * t * nhw} (published partition, "
                "docs/model.md §3.2)"
            )
        ranks = torch.arange(num_visible, device=device)
        return rearrange(ranks, "(nt t nhw hw) -> (nt nhw) (t hw)", nt=nt, t=t, nhw=nhw)

    def rank_layout(self, visible_index: Tensor) -> Tensor:
        """Published partition of ascending ``visible_index`` (B, Nv) → layout (B, R, Nv/R)."""
        order = self.rank_order(visible_index.shape[1], visible_index.device)
        return visible_index[:, order]

    def window_layout(self, visible_index: Tensor) -> Tensor:
        """Window partition of ``visible_index`` (B, Nv) → layout (B, R, Nv/R), each visible token
        in its own window (ascending within the window).

        Raises ValueError unless every window holds exactly Nv/R visible tokens.
        """
        B, Nv = visible_index.shape
        R, device = self.num_regions, visible_index.device
        if Nv % R:
            raise ValueError(f"{Nv} visible tokens cannot be spread equally over {R} regions")
        order = self.window_order(device).flatten()
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel(), device=device)
        slot = position[visible_index]
        counts = torch.zeros(B, R, dtype=torch.long, device=device)
        counts.scatter_add_(1, torch.div(slot, self.region_size, rounding_mode="floor"),
                            torch.ones_like(slot))
        if not bool((counts == Nv // R).all()):
            raise ValueError(
                "the encoder mask is not window-aware: the visible tokens are not spread equally "
                f"over the {R} LG regions of size {self.region} (counts per region: "
                f"{counts[0].tolist()}); use window-aware masks or partition='rank'"
            )
        return order[slot.sort(dim=1).values].view(B, R, Nv // R)
