"""IAV-CLM: iterative audio-visual correlation learning (docs/model.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avfmae.models.blocks import drop_path_rates
from avfmae.models.dier import DiERUnit
from avfmae.models.hafe import HAFE
from avfmae.models.refinement import ERNorm, Refinement

__all__ = ["FusionOutput", "IAVCLM"]


@dataclass
class FusionOutput:
    """``video`` (B, Nv, C) and ``audio`` (B, Na, C): fused tokens Z_v, Z_a; ``query`` (B, N_f, C):
    the refined joint query F after the last iteration."""

    video: Tensor
    audio: Tensor
    query: Tensor


class IAVCLM(nn.Module):
    """K DiER units, each followed by the shared ER refinement of the joint query, then HAFE:

    ``F = proj(F⁰)``; for k = 1..K: ``X_v, X_a = DiER_k(X_v, X_a)``; ``F = ER(F, X_v, X_a)``;
    finally ``Z_v, Z_a = HAFE(X_v^1..K, X_a^1..K, F)``.

    Stochastic depth: DiER k uses ``linspace(0, rate, K)[k]``, HAFE ``rate / 2``. Permutation-
    equivariant over the tokens of each modality.
    Shapes: ``video`` (B, Nv, C), ``audio`` (B, Na, C), ``query`` F⁰ (B, N_f, 2C).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        er_norm: ERNorm = "layer",
    ) -> None:
        super().__init__()
        rates = drop_path_rates(drop_path_rate, depth)
        self.units = nn.ModuleList(
            DiERUnit(dim, num_heads, mlp_ratio, qkv_bias, rate) for rate in rates
        )
        self.refine = Refinement(dim, er_norm)
        self.hafe = HAFE(dim, num_heads, mlp_ratio, qkv_bias, 0.5 * drop_path_rate)

    def forward(self, video: Tensor, audio: Tensor, query: Tensor) -> FusionOutput:
        query = self.refine.input_proj(query)
        video_stages, audio_stages = [], []
        for unit in self.units:
            video, audio = unit(video, audio)
            query = self.refine(query, video, audio)
            video_stages.append(video)
            audio_stages.append(audio)
        z_video, z_audio = self.hafe(
            torch.stack(video_stages, dim=2), torch.stack(audio_stages, dim=2), query
        )
        return FusionOutput(z_video, z_audio, query)
