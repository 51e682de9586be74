"""ER refinement: the joint audio-visual query attends to both modalities (docs/model.md §4.2)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from avfmae.models.attention import attend
from avfmae.models.blocks import LN_EPS

__all__ = ["ERNorm", "Refinement"]

ERNorm = Literal["layer", "batch"]

# The output LayerNorm keeps PyTorch's default eps, unlike every other LayerNorm (1e-6).
OUTPUT_NORM_EPS = 1e-5


class Refinement(nn.Module):
    """One refinement step, shared by all fusion iterations:

    ``R_m = PReLU(Norm(W_m · softmax(F X_mᵀ / √C) X_m))`` for m ∈ {video, audio} (single head,
    no q/k/v projections; ``W_m`` is the published 1×1 conv over channels), then
    ``F ← LN(F + R_v + R_a)``.

    ``norm`` picks ``Norm``: ``"batch"`` is the published BatchNorm1d over channels with B·N_f
    positions — it needs N_f·B > 1 in training (pretraining has N_f = 1, so batch ≥ 2) and its
    statistics depend on the batch; ``"layer"`` (our default) is a per-position LayerNorm over
    channels, which trains at any batch size and behaves the same in train and eval mode.

    :attr:`input_proj` maps the initial 2C-wide query to C (applied once, before the first step).
    Shapes: ``query`` (B, N_f, C), ``video`` (B, Nv, C), ``audio`` (B, Na, C) → (B, N_f, C).
    """

    def __init__(self, dim: int, norm: ERNorm = "layer") -> None:
        super().__init__()
        make_norm = {
            "layer": lambda: nn.LayerNorm(dim, eps=LN_EPS),
            "batch": lambda: nn.BatchNorm1d(dim),
        }[norm]
        self.input_proj = nn.Linear(2 * dim, dim)
        self.video_proj = nn.Linear(dim, dim)
        self.video_norm = make_norm()
        self.video_act = nn.PReLU()
        self.audio_proj = nn.Linear(dim, dim)
        self.audio_norm = make_norm()
        self.audio_act = nn.PReLU()
        self.norm = nn.LayerNorm(dim, eps=OUTPUT_NORM_EPS)

    @staticmethod
    def _branch(
        proj: nn.Linear, norm: nn.Module, act: nn.PReLU, query: Tensor, x: Tensor
    ) -> Tensor:
        y = proj(attend(query, x, x))
        return act(norm(y.flatten(0, 1)).view_as(y))

    def forward(self, query: Tensor, video: Tensor, audio: Tensor) -> Tensor:
        r_audio = self._branch(self.audio_proj, self.audio_norm, self.audio_act, query, audio)
        r_video = self._branch(self.video_proj, self.video_norm, self.video_act, query, video)
        return self.norm(query + r_audio + r_video)
