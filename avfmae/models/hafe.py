"""HAFE layer: attention-pool each token over the fusion stages, then attend to the joint
query (SPEC §5.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avfmae.models.attention import Attention
from avfmae.models.blocks import Block, drop_path, layer_norm, mlp

__all__ = ["HAFE"]


class _StagePool(nn.Module):
    """Per modality: a Block over each token's K stage values, sigmoid gates (not softmax
    normalised), gated sum. (B, N, K, C) → (B, N, C)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, dp: float):
        super().__init__()
        self.block = Block(dim, num_heads, mlp_ratio, qkv_bias, dp)
        self.gate = nn.Linear(dim, 1)

    def forward(self, stages: Tensor) -> Tensor:
        B, N, K, C = stages.shape
        h = self.block(stages.reshape(B * N, K, C))
        return (torch.sigmoid(self.gate(h)) * h).sum(dim=1).view(B, N, C)


class HAFE(nn.Module):
    """``Z_m = StagePool_m(X_m^1..X_m^K)``; ``Z_m += DP(CA(LN_m Z_m, LN_ctx F))``;
    ``Z_m += DP(MLP_m(LN Z_m))``. The cross-attention and the context LayerNorm are shared by the
    two modalities, as published (SPEC §12 item 18). No final LayerNorm.

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
        self.video_pool = _StagePool(*args)
        self.audio_pool = _StagePool(*args)
        self.context_norm = layer_norm(dim)
        self.cross_attn = Attention(dim, num_heads, qkv_bias)
        self.video_query_norm = layer_norm(dim)
        self.audio_query_norm = layer_norm(dim)
        self.video_out_norm = layer_norm(dim)
        self.video_out_mlp = mlp(dim, mlp_ratio)
        self.audio_out_norm = layer_norm(dim)
        self.audio_out_mlp = mlp(dim, mlp_ratio)
        self.drop_path = drop_path(drop_path_rate)

    def _attend(self, z: Tensor, query_norm: nn.LayerNorm, context: Tensor, out_norm, out_mlp):
        # The joint query has 1 (pretraining) or 8 (fine-tuning) tokens: the folded form is cheaper.
        z = z + self.drop_path(self.cross_attn.forward_few_keys(query_norm(z), context))
        return z + self.drop_path(out_mlp(out_norm(z)))

    def forward(
        self, video_stages: Tensor, audio_stages: Tensor, query: Tensor
    ) -> tuple[Tensor, Tensor]:
        context = self.context_norm(query)
        z_video = self._attend(
            self.video_pool(video_stages), self.video_query_norm, context,
            self.video_out_norm, self.video_out_mlp,
        )
        z_audio = self._attend(
            self.audio_pool(audio_stages), self.audio_query_norm, context,
            self.audio_out_norm, self.audio_out_mlp,
        )
        return z_video, z_audio
