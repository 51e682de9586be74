"""Non-overlapping patch embedding for video tubelets and spectrogram patches."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["PatchEmbed"]

# Values in the conv weight's (c, *patch) order, so that a linear map with the flattened
# weight projects a patch exactly as the conv does.
PATCHIFY = {
    2: "b c (h p0) (w p1) -> b (h w) (c p0 p1)",
    3: "b c (t p0) (h p1) (w p2) -> b (t h w) (c p0 p1 p2)",
}


class PatchEmbed(nn.Module):
    """Conv with kernel = stride = ``patch``: video (B, 3, 16, 160, 160) with patch (2, 16, 16) →
    (B, 800, C); audio (B, 1, 256, 128) with patch (16, 16) → (B, 128, C). Tokens come out in
    flat raster order of the patch grid.
    """

    def __init__(self, in_chans: int, patch: tuple[int, ...], dim: int) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[len(patch)]
        self.patch = tuple(patch)
        self.proj = conv(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """All patches (``index`` None) → (B, N, C), or only the patches at flat indices
        ``index`` (B, K) → (B, K, C). The second form skips the masked patches' projection,
        which is ~10% of a pretraining step's encoder cost."""
        if index is None:
            return self.proj(x).flatten(2).transpose(1, 2)
        patches = self.patchify(x)
        patches = patches.gather(1, index.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)

    def patchify(self, x: Tensor) -> Tensor:
        """(B, c, *grid·patch) → (B, N, c·prod(patch)), values in the conv weight's (c, *patch)
        order."""
        sizes = {f"p{i}": p for i, p in enumerate(self.patch)}
        return rearrange(x, PATCHIFY[len(self.patch)], **sizes)
