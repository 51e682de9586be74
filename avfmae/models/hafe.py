"""HAFE layer: attention-pool each token over the fusion stages, then attend to the joint
query (docs/model.md §4.3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avfmae.models.attention import Attention
from avfmae.models.blocks import Block, drop_path, layer_norm, mlp

__all__ = ["HAFE"]


class _Branch(nn.Module):
    """One modality's HAFE parameters: the stage pooling (a Block over each token's K stage
    values, then sigmoid gates — not softmax-normalised — and a gated sum), the query norm of the
    shared cross-attention, and the output MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, dp: float):
        super().__init__()
        self.stage_block = Block(dim, num_heads, mlp_ratio, qkv_bias, dp)
        self.stage_gate = nn.Linear(dim, 1)
        self.query_norm = layer_norm(dim)
        self.out_norm = layer_norm(dim)
        self.out_mlp = mlp(dim, mlp_ratio)

    def pool(self, stages: Tensor) -> Tensor:
        """(B, N, K, C) → (B, N, C)."""
        B, N, K, C = stages.shape
        h = self.stage_block(stages.reshape(B * N, K, C))
        return (torch.sigmoid(self.stage_gate(h)) * h).sum(dim=1).view(B, N, C)


class HAFE(nn.Module):
    """Per modality m: ``Z_m = Pool_m(X_m^1..X_m^K)``; ``Z_m += DP(CA(LN_m Z_m, LN_ctx F))``;
    ``Z_m += DP(MLP_m(LN Z_m))``. The cross-attention and the context LayerNorm are shared by the
    two modalities, as published (docs/model.md F18). No final LayerNorm.

    Shapes: ``video_stages`` (B, Nv, K, C), ``audio_stages`` (B, Na, K, C), ``query`` (B, N_f, C)
    → ``(Z_v (B, Nv, C), Z_a (B, Na, C))``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        args = (dim, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        self.video = _Branch(*args)
        self.audio = _Branch(*args)
        self.context_norm = layer_norm(dim)
        self.cross_attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = drop_path(drop_path_rate)

    def _fuse(self, branch: _Branch, stages: Tensor, context: Tensor) -> Tensor:
        z = branch.pool(stages)
        # The joint query has 1 (pretraining) or 8 (fine-tuning) tokens: the folded form is cheaper.
        z = z + self.drop_path(self.cross_attn.forward_few_keys(branch.query_norm(z), context))
        return z + self.drop_path(branch.out_mlp(branch.out_norm(z)))

    def forward(
        self, video_stages: Tensor, audio_stages: Tensor, query: Tensor
    ) -> tuple[Tensor, Tensor]:
        context = self.context_norm(query)
        return (
            self._fuse(self.video, video_stages, context),
            self._fuse(self.audio, audio_stages, context),
        )
