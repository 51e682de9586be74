"""Local–global modality encoder: patch embedding, fixed positions, LG blocks, LayerNorm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from avfmae.models.blocks import drop_path_rates, layer_norm
from avfmae.models.lg_block import LGBlock
from avfmae.models.patch_embed import PatchEmbed
from avfmae.models.pos_embed import sinusoid_table
from avfmae.models.regions import RegionGrid
from avfmae.models.weight_init import trunc_normal_

__all__ = ["LGEncoder"]


class LGEncoder(nn.Module):
    """A stack of LG blocks over one modality (docs/model.md §3).

    ``input_size`` is the input's extent per grid axis — video (16, 160, 160), audio (256, 128);
    ``patch`` the patch extent — (2, 16, 16), (16, 16); ``region`` the LG region size in tokens —
    (2, 5, 10), (4, 4). The position table is the fixed sinusoid over the flat token index.

    Two entry points:

    * :meth:`forward` — all tokens in exact windows (fine-tuning); returns the LN'd region tokens
      of every layer, (B, R, depth, C).
    * :meth:`forward_masked` — only the tokens named by a layout (pretraining); returns the LN'd
      local tokens at the requested layers, each (B, R·S', C), in layout order.
    """

    def __init__(
        self,
        in_chans: int,
        input_size: Sequence[int],
        patch: Sequence[int],
        region: Sequence[int],
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if any(s % p for s, p in zip(input_size, patch)):
            raise ValueError(f"input size {tuple(input_size)} is not a multiple of patch {patch}")
        grid = tuple(s // p for s, p in zip(input_size, patch))
        self.regions = RegionGrid(grid, tuple(region))
        self.dim = dim
        self.depth = depth
        self.patch_embed = PatchEmbed(in_chans, tuple(patch), dim)
        self.region_tokens = nn.Parameter(torch.zeros(self.regions.num_regions, dim))
        rates = drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            LGBlock(dim, num_heads, mlp_ratio, qkv_bias, rate) for rate in rates
        )
        self.norm = layer_norm(dim)
        self.register_buffer(
            "pos_embed", sinusoid_table(self.regions.num_tokens, dim), persistent=False
        )
        self.register_buffer(
            "window_order", self.regions.window_order().flatten(), persistent=False
        )
        trunc_normal_(self.region_tokens, std=0.02)

    @property
    def num_regions(self) -> int:
        return self.regions.num_regions

    def _with_region_tokens(self, local: Tensor) -> Tensor:
        """(B, R, S, C) local tokens → (B·R, 1+S, C) with each region's token in slot 0."""
        B, R, S, C = local.shape
        region = self.region_tokens.to(local.dtype).expand(B, R, C).unsqueeze(2)
        return torch.cat((region, local), dim=2).view(B * R, 1 + S, C)

    def forward(self, x: Tensor) -> Tensor:
        """All tokens: (B, c, *input_size) → LN'd region tokens of every layer (B, R, depth, C)."""
        tokens = self.patch_embed(x) + self.pos_embed
        B, _, C = tokens.shape
        R = self.num_regions
        windows = tokens.index_select(1, self.window_order).view(B, R, -1, C)
        x = self._with_region_tokens(windows)
        region_tokens = []
        for i, block in enumerate(self.blocks):
            x = block(x, R, regions_only=i == self.depth - 1)
            region_tokens.append(x[:, 0])
        return self.norm(torch.stack(region_tokens, dim=1).view(B, R, self.depth, C))

    def forward_masked(self, x: Tensor, layout: Tensor, out_layers: Sequence[int]) -> list[Tensor]:
        """Visible tokens only.

        ``x`` (B, c, *input_size); ``layout`` (B, R, S') flat indices of the tokens placed in each
        region slot (see :class:`~avfmae.models.regions.RegionGrid`); ``out_layers`` 0-based
        block indices to export, ascending. Returns one (B, R·S', C) LN'd tensor per exported
        layer, local tokens in layout order (region-major).
        """
        B, R, S = layout.shape
        index = layout.reshape(B, R * S)
        tokens = self.patch_embed(x, index) + self.pos_embed[index]
        x = self._with_region_tokens(tokens.view(B, R, S, -1))
        outputs = []
        for i, block in enumerate(self.blocks[: max(out_layers) + 1]):
            x = block(x, R)
            if i in out_layers:
                outputs.append(self.norm(x[:, 1:].reshape(B, R * S, -1)))
        return outputs
