"""Multi-head attention with separate query and key/value projections.

One module serves self-attention (``context=None``) and cross-attention. As published, the
query and value projections carry a bias and the key projection does not: a key bias adds the
same constant to every logit of a softmax row, so it would be a learnable no-op.

Besides the plain :meth:`Attention.forward`, two algebraically identical forms serve the LG
block's cross-attentions between all local tokens (hundreds) and the region tokens (8):

* :meth:`Attention.forward_few_keys` — many queries, few keys: the query projection is folded
  into the keys and the output projection into the values;
* :meth:`Attention.forward_few_queries` — few queries, many keys: the key projection is folded
  into the queries and the value projection is applied after pooling.

With M few tokens and h heads, each of the many tokens then costs ``2·M·h·C`` multiply-adds
instead of ``2·C²`` (M·h = 64 vs C = 512 for the base scale): about a fifth of an LG block's
work disappears without changing what it computes.

Every softmax attention goes through :func:`attend`, which picks the kernel by device and
precision (``docs/speed.md`` has the measurements): PyTorch's fused SDPA everywhere except
reduced precision on the CPU, where its backward was slower than writing the three steps out as
matrix products that oneDNN runs on the bf16 units. :func:`attention_backend` forces one kernel
(benchmarks, equivalence tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ATTENTION_BACKENDS", "Attention", "attend", "attention_backend", "matmul_attention"]

ATTENTION_BACKENDS = ("auto", "sdpa", "matmul")
_backend = "auto"


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Use kernel ``name`` (one of :data:`ATTENTION_BACKENDS`) for :func:`attend` inside the
    ``with`` block."""
    global _backend
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend {name!r} is not one of {list(ATTENTION_BACKENDS)}")
    previous, _backend = _backend, name
    try:
        yield
    finally:
        _backend = previous


def matmul_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """``softmax(q kᵀ · scale) v`` as two matrix products; materialises the (…, N, M) logits."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (q @ (k.transpose(-2, -1) * scale)).softmax(dim=-1) @ v


def _wants_matmul(q: Tensor) -> bool:
    if _backend != "auto":
        return _backend == "matmul"
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)


def attend(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """Softmax attention of ``q`` (…, N, d) over ``k``/``v`` (…, M, d) → (…, N, d), with the
    kernel chosen for the device and precision (``scale`` defaults to ``d**-0.5``)."""
    if _wants_matmul(q):
        return matmul_attention(q, k, v, scale)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)


class Attention(nn.Module):
    """``proj(softmax(q kᵀ / √d_head) v)`` over ``num_heads`` heads.

    Shapes: ``x`` (B, N, C) queries; ``context`` (B, M, C) keys/values (``x`` itself when None);
    returns (B, N, C).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.proj = nn.Linear(dim, dim)

    def _kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values, each (B, M, h, d)."""
        bias = None
        if self.v_bias is not None:
            bias = torch.cat((torch.zeros_like(self.v_bias), self.v_bias))
        B, M, _ = context.shape
        kv = F.linear(context, self.kv.weight, bias).view(B, M, 2, self.num_heads, self.head_dim)
        return kv.unbind(2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        context = x if context is None else context
        B, N, C = x.shape
        q = F.linear(x, self.q.weight, self.q_bias).view(B, N, self.num_heads, self.head_dim)
        k, v = self._kv(context)
        out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def forward_few_keys(self, x: Tensor, context: Tensor) -> Tensor:
        """Same as ``forward(x, context)``, cheap when ``context`` has few tokens.

        Per head, ``(W_q x + b_q)·k / √d = x·(W_qᵀ k)/√d + b_q·k/√d`` and
        ``W_o Σ_m p_m v_m = Σ_m p_m (W_o v_m)``: the (B, M·h, C) folded keys and values replace
        the two C×C projections of the N queries. The softmax runs over the M keys of each
        head on an (N, M·h) logit matrix (smaller than ``x`` itself).
        """
        B, N, C = x.shape
        M, h, d = context.shape[1], self.num_heads, self.head_dim
        k, v = self._kv(context)
        scale = d**-0.5
        keys = torch.einsum("bmhi,hic->bmhc", k, self.q.weight.view(h, d, C)) * scale
        logits = x @ keys.reshape(B, M * h, C).transpose(1, 2)
        if self.q_bias is not None:
            bias = torch.einsum("bmhi,hi->bmh", k, self.q_bias.view(h, d)) * scale
            logits = logits + bias.reshape(B, 1, M * h)
        probs = logits.view(B, N, M, h).softmax(dim=2)
        values = torch.einsum("bmhi,chi->bmhc", v, self.proj.weight.view(C, h, d))
        out = probs.view(B, N, M * h) @ values.reshape(B, M * h, C)
        return out + self.proj.bias

    def forward_few_queries(self, x: Tensor, context: Tensor) -> Tensor:
        """Same as ``forward(x, context)``, cheap when ``x`` has few tokens.

        Per head, ``q·(W_k c) = (W_kᵀ q)·c`` and ``Σ_m p_m (W_v c_m + b_v) = W_v (Σ_m p_m c_m)
        + b_v``: the N·h folded queries attend to the raw context (one SDPA call with head
        width C), and the value projection is applied to the N·h pooled vectors.
        """
        B, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        q = F.linear(x, self.q.weight, self.q_bias).view(B, N, h, d)
        w_k, w_v = self.kv.weight.view(2, h, d, C).unbind(0)
        queries = torch.einsum("bnhi,hic->bnhc", q, w_k).reshape(B, 1, N * h, C)
        ctx = context.unsqueeze(1)
        pooled = attend(queries, ctx, ctx, scale=d**-0.5)
        out = torch.einsum("bnhc,hic->bnhi", pooled.view(B, N, h, C), w_v)
        if self.v_bias is not None:
            out = out + self.v_bias.view(h, d)
        return self.proj(out.reshape(B, N, C))
