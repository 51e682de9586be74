"""Pre-norm transformer blocks shared by the fusion module and the decoders.

All LayerNorms use eps 1e-6 (the published ``norm_layer``); the only exception is the ER
refinement's output norm (see :mod:`avfmae.models.refinement`).
"""

from __future__ import annotations

from torch import Tensor, nn

from avfmae.models.attention import Attention

__all__ = [
    "LN_EPS",
    "Block",
    "CrossBlock",
    "DropPath",
    "Mlp",
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


class DropPath(nn.Module):
    """Stochastic depth: in training, zeroes each leading-dim row of the residual branch with
    probability ``rate`` and scales the kept rows by ``1 / (1 - rate)``; (B, ...) → (B, ...).

    timm's layer of the same name draws the same Bernoulli tensor the same way; ours keeps the
    model code free of timm, whose import slows every stage's start (docs/speed.md)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0.0 else x * mask

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Mlp(nn.Module):
    """``Linear(C, H) → GELU (exact) → Dropout → Linear(H, C) → Dropout``; (..., C) → (..., C).
    Parameter names ``fc1``/``fc2`` as in the published checkpoints."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


def drop_path(rate: float) -> nn.Module:
    """Stochastic depth on the residual branch (per leading-dim row); identity at rate 0."""
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``rate`` over ``depth`` blocks."""
    return [rate * i / (depth - 1) for i in range(depth)] if depth > 1 else [0.0] * depth


def mlp(dim: int, mlp_ratio: float, drop: float = 0.0) -> Mlp:
    """``Linear(C, rC) → GELU (exact) → Linear(rC, C)``."""
    return Mlp(dim, int(dim * mlp_ratio), drop=drop)


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
