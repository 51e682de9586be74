"""DiER unit: gated mix of a self- and a cross-attention branch per modality
(docs/model.md §4.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avfmae.models.blocks import Block, CrossBlock, layer_norm

__all__ = ["DiERUnit"]


class DiERUnit(nn.Module):
    """Both modalities are updated in parallel from their old values:

    ``V_sa = Block(X_v)``, ``V_ca = CrossBlock(X_v, ctx=X_a)``,
    ``g1, g2 = σ(W[V_sa; V_ca] + b)`` (two C-wide gates, one Linear(2C → 2C)),
    ``X_v ← LN(g1 ⊙ V_sa + g2 ⊙ V_ca)``; audio likewise with its own weights.

    Shapes: ``video`` (B, Nv, C), ``audio`` (B, Na, C) → same shapes.
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
        self.video_self = Block(*args)
        self.audio_self = Block(*args)
        self.video_cross = CrossBlock(*args)
        self.audio_cross = CrossBlock(*args)
        self.video_gate = nn.Linear(2 * dim, 2 * dim)
        self.audio_gate = nn.Linear(2 * dim, 2 * dim)
        self.video_norm = layer_norm(dim)
        self.audio_norm = layer_norm(dim)

    @staticmethod
    def _mix(gate: nn.Linear, norm: nn.LayerNorm, own: Tensor, cross: Tensor) -> Tensor:
        g_own, g_cross = torch.sigmoid(gate(torch.cat((own, cross), dim=-1))).chunk(2, dim=-1)
        return norm(g_own * own + g_cross * cross)

    def forward(self, video: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        video_own, audio_own = self.video_self(video), self.audio_self(audio)
        video_cross = self.video_cross(video, audio)
        audio_cross = self.audio_cross(audio, video)
        return (
            self._mix(self.video_gate, self.video_norm, video_own, video_cross),
            self._mix(self.audio_gate, self.audio_norm, audio_own, audio_cross),
        )
