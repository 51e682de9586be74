"""Pre-norm transformer blocks shared by the fusion module and the decoders.

All LayerNorms use eps 1e-6 (the published ``norm_layer``); the only exception is the ER
refinement's output norm (see :mod:`avfmae.models.refinement`).
"""

from __future__ import annotations

from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from avfmae.models.attention import Attention

__all__ = [
    "LN_EPS",
    "Block",
    "CrossBlock",
    "SkipBlock",
    "drop_path",
    "drop_path_rates",
    "layer_norm",
    "mlp",
]

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    """The model's LayerNorm: eps 1e-6, learnable affine."""
    return nn.LayerNorm(dim, eps=LN_EPS)


def drop_path(rate: float) -> nn.Module:
    """Stochastic depth on the residual branch (per leading-dim row); identity at rate 0."""
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks."""
    return [rate * i / (depth - 1) for i in range(depth)] if depth > 1 else [0.0] * depth


def mlp(dim: int, mlp_ratio: float, drop: float = 0.0) -> Mlp:
    """``Linear(C, rC) → GELU (exact) → Linear(rC, C)``."""
    return Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)


class Block(nn.Module):
    """Self-attention block: ``x += DP(SA(LN x)); x += DP(MLP(LN x))``. (B, N, C) → (B, N, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.mlp = mlp(dim, mlp_ratio)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossBlock(nn.Module):
    """Cross-attention block: ``x += DP(CA(LN x, LN' ctx)); x += DP(MLP(LN x))``.

    Shapes: ``x`` (B, N, C), ``context`` (B, M, C) → (B, N, C).
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
        self.norm_q = layer_norm(dim)
        self.norm_kv = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.mlp = mlp(dim, mlp_ratio)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm_q(x), self.norm_kv(context)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SkipBlock(nn.Module):
    """Decoder block fed by an encoder skip feature (HiCMAE's ``CSBlock``).

    ``x += DP(CA(LN x, LN' skip)); x += DP(SA(LN x)); x += DP(MLP(LN x))``.
    Shapes: ``x`` (B, N, D), ``skip`` (B, M, D) → (B, N, D).
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
        self.norm_q = layer_norm(dim)
        self.norm_kv = layer_norm(dim)
        self.cross_attn = Attention(dim, num_heads, qkv_bias)
        self.norm1 = layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = layer_norm(dim)
        self.mlp = mlp(dim, mlp_ratio)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = x + self.drop_path(self.cross_attn(self.norm_q(x), self.norm_kv(skip)))
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
