"""Local–global (LG) block: four attention steps over regions plus one shared MLP
(docs/model.md §3.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avfmae.models.attention import Attention
from avfmae.models.blocks import drop_path, layer_norm, mlp

__all__ = ["LGBlock"]


class LGBlock(nn.Module):
    """One LG block on ``x`` (B·R, 1+S, C): row ``b·R + r`` is region r of sample b, slot 0 its
    region token, slots 1..S its local tokens. With M the region tokens (B, R, C) and L all local
    tokens of a sample (B, R·S, C):

    1. local:     ``x += DP(SA(LN x))`` inside every region (1+S tokens);
    2. global:    ``M += DP(SA(LN M))`` across the R region tokens;
    3. inject:    ``L += DP(CA(q=LN L, kv=LN' M))``, region → local;
    4. aggregate: ``M += DP(CA(q=LN M, kv=LN' L))``, all local → region (the "holistic" step);
    5. ``x += DP(MLP(LN x))`` on region and local tokens alike.

    Steps 3 and 4 use the folded forms of :class:`~avfmae.models.attention.Attention` (R region
    tokens against R·S local tokens), which compute the same function with fewer operations.

    Returns the same layout. ``regions_only`` skips step 5 for the local tokens, for a last block
    whose local tokens nobody reads (the classifier exports region tokens only): the region
    tokens are exactly those of the full block, the local slots hold their state after step 3.
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
        self.local_norm = layer_norm(dim)
        self.local_attn = Attention(dim, num_heads, qkv_bias)
        self.region_norm = layer_norm(dim)
        self.region_attn = Attention(dim, num_heads, qkv_bias)
        self.inject_norm = layer_norm(dim)
        self.inject_context_norm = layer_norm(dim)
        self.inject_attn = Attention(dim, num_heads, qkv_bias)
        self.aggregate_norm = layer_norm(dim)
        self.aggregate_context_norm = layer_norm(dim)
        self.aggregate_attn = Attention(dim, num_heads, qkv_bias)
        self.mlp_norm = layer_norm(dim)
        self.mlp = mlp(dim, mlp_ratio)
        self.drop_path = drop_path(drop_path_rate)

    def forward(self, x: Tensor, num_regions: int, regions_only: bool = False) -> Tensor:
        BR, T, C = x.shape
        B, S = BR // num_regions, T - 1
        x = x + self.drop_path(self.local_attn(self.local_norm(x)))

        m = x[:, 0].reshape(B, num_regions, C)
        m = m + self.drop_path(self.region_attn(self.region_norm(m)))

        local = x[:, 1:]
        q = self.inject_norm(local).view(B, num_regions * S, C)
        update = self.inject_attn.forward_few_keys(q, self.inject_context_norm(m))
        local = local + self.drop_path(update).view(BR, S, C)

        context = self.aggregate_context_norm(local).view(B, num_regions * S, C)
        update = self.aggregate_attn.forward_few_queries(self.aggregate_norm(m), context)
        m = m + self.drop_path(update)

        m = m.view(BR, 1, C)
        if regions_only:
            m = m + self.drop_path(self.mlp(self.mlp_norm(m)))
            return torch.cat((m, local), dim=1)
        x = torch.cat((m, local), dim=1)
        return x + self.drop_path(self.mlp(self.mlp_norm(x)))
