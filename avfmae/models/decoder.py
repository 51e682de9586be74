"""MAE decoder with hierarchical skip connections from the encoder (docs/model.md §5.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from avfmae.models.blocks import Block, SkipBlock, layer_norm
from avfmae.models.pos_embed import sinusoid_table
from avfmae.models.weight_init import trunc_normal_

__all__ = ["SkipDecoder"]


class SkipDecoder(nn.Module):
    """Reconstructs the decoded positions of one modality.

    ``embed`` (Linear C→D, no bias) maps the fused visible tokens and every skip feature to the
    decoder width; fixed sinusoid positions (width D) are added. The sequence is
    ``[visible tokens + pos] ++ [mask_token + pos of each decoded position]``; block 0 is a plain
    block, block j ≥ 1 a :class:`SkipBlock` fed by ``skips[-j]`` (the deepest level first); the
    head reads the last ``N_dec`` rows.
    """

    def __init__(
        self,
        encoder_dim: int,
        dim: int,
        num_skips: int,
        num_heads: int,
        num_tokens: int,
        out_dim: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(
            [Block(dim, num_heads, mlp_ratio, qkv_bias)]
            + [SkipBlock(dim, num_heads, mlp_ratio, qkv_bias) for _ in range(num_skips)]
        )
        self.norm = layer_norm(dim)
        self.head = nn.Linear(dim, out_dim)
        self.register_buffer("pos_embed", sinusoid_table(num_tokens, dim), persistent=False)
        trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self,
        visible: Tensor,
        skips: Sequence[Tensor],
        visible_pos: Tensor,
        decoded_pos: Tensor,
    ) -> Tensor:
        """``visible`` (B, Nv, C) fused tokens; ``skips`` shallow → deep, each (B, Nv, C);
        ``visible_pos`` (B, Nv) position index given to each visible token (and skip row);
        ``decoded_pos`` (B, Nd) positions to reconstruct. Returns (B, Nd, out_dim)."""
        pos_visible = self.pos_embed[visible_pos]
        mask_tokens = self.mask_token.to(visible.dtype) + self.pos_embed[decoded_pos]
        x = torch.cat((self.embed(visible) + pos_visible, mask_tokens), dim=1)
        skips = [self.embed(s) + pos_visible for s in skips]
        x = self.blocks[0](x)
        for j, block in enumerate(self.blocks[1:], start=1):
            x = block(x, skips[-j])
        return self.head(self.norm(x[:, -decoded_pos.shape[1]:]))
