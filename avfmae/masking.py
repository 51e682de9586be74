"""Dual masking for pretraining (docs/model.md §5.1, F3).

Every function returns a ``bool`` tensor of shape ``(B, N)`` over the flattened token grid with
**True = masked**:

* an *encoder* mask hides tokens from the encoder (False = visible);
* a *decoder* mask marks positions the decoder does **not** reconstruct (decoded = ``~mask``).

Token grids (docs/model.md §1.5): video ``(T, H, W) = (8, 10, 10)``, flat index
``t·100 + h·10 + w``; audio ``(TT, F) = (16, 8)``, flat index ``tt·8 + f``.

LG regions: video windows ``(2, 5, 10)`` → 8 regions, ``r = 2·(t//2) + h//5``; audio windows
``(4, 4)`` → 8 regions, ``r = 2·(tt//4) + f//4``. :func:`region_layout` gives the flat indices of
each region (rows = regions, columns = slots in raster order inside the window, which is also
ascending flat-index order).

Generators:

* :func:`tube_mask` — one random spatial map per sample tiled over all time slices (published).
* :func:`tube_window_mask` — tube masking with the same number of visible positions in each
  spatial window (default: 5 per 5×10 half-face), so every video LG region has the same visible
  count and regions are exact windows (window-aware, docs/model.md F3).
* :func:`running_cell_mask` — VideoMAE-V2 running-cell decoder mask (2×2 cells).
* :func:`random_mask` — uniformly random positions (published audio masks).
* :func:`window_random_mask` — random masking with the same count inside each window (default:
  3 visible per 4×4 audio window).
* :func:`dual_masks` — the four masks of a pretraining batch from a :class:`PretrainConfig`.
* :func:`sample_masks` / :func:`sample_view_masks` — those per clip, keyed by (seed, epoch, clip),
  and the second masked view's video encoder masks.

All randomness comes from an explicit ``torch.Generator`` (``None`` = torch's global RNG), so a
seeded generator gives identical masks on every machine.

Allowed ratios are checked when ``params.yaml`` is loaded (:mod:`avfmae.mask_ratios`).
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange, repeat

from avfmae.mask_ratios import RATIO_TOL
from avfmae.train.seeding import make_generator

__all__ = [
    "VIDEO_GRID",
    "AUDIO_GRID",
    "VIDEO_REGION",
    "AUDIO_REGION",
    "region_layout",
    "video_region_layout",
    "audio_region_layout",
    "tube_mask",
    "tube_window_mask",
    "running_cell_mask",
    "random_mask",
    "window_random_mask",
    "video_encoder_mask",
    "dual_masks",
    "sample_masks",
    "sample_view_masks",
    "visible_per_region",
    "region_visible_indices",
]

VIDEO_GRID = (8, 10, 10)
AUDIO_GRID = (16, 8)
VIDEO_REGION = (2, 5, 10)
AUDIO_REGION = (4, 4)

# Windows in raster order of the window grid, slots in raster order inside a window.
TILE = {
    2: "(nh h) (nw w) -> (nh nw) (h w)",
    3: "(nt t) (nh h) (nw w) -> (nt nh nw) (t h w)",
}


# ----------------------------------------------------------------------------------------------
# Region layout
# ----------------------------------------------------------------------------------------------


def region_layout(grid: tuple[int, ...], window: tuple[int, ...]) -> torch.Tensor:
    """Flat token indices of every window: ``LongTensor (R, S)``.

    ``grid`` and ``window`` have the same number of dims; each grid dim must be a multiple of the
    window dim. Regions are numbered in raster order of the window grid, slots in raster order
    inside the window (video: ``r = 2·(t//2) + h//5``, ``s = (t%2)·50 + (h%5)·10 + w``).
    """
    tiles = len(grid) == len(window) and not any(g % w for g, w in zip(grid, window))
    if not tiles or len(grid) not in TILE:
        raise ValueError(f"window {window} does not tile grid {grid} (2-D or 3-D)")
    index = torch.arange(_prod(grid)).reshape(grid)
    window_extent = dict(zip("thw"[-len(window):], window))
    return rearrange(index, TILE[len(grid)], **window_extent).contiguous()


def video_region_layout() -> torch.Tensor:
    """``LongTensor (8, 100)``: the video LG regions (2×5×10 windows of the 8×10×10 grid)."""
    return region_layout(VIDEO_GRID, VIDEO_REGION)


def audio_region_layout() -> torch.Tensor:
    """``LongTensor (8, 16)``: the audio LG regions (4×4 windows of the 16×8 grid)."""
    return region_layout(AUDIO_GRID, AUDIO_REGION)


def visible_per_region(encoder_mask: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """Number of visible (False) tokens in each region: ``LongTensor (B, R)``."""
    return (~encoder_mask[:, layout]).sum(-1)


def region_visible_indices(encoder_mask: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """Flat indices of the visible tokens of each region: ``LongTensor (B, R, V)``.

    Within a region the indices are ascending. Requires the same visible count ``V`` in every
    region of every sample (true for window-aware masks); raises ``ValueError`` otherwise.
    """
    masked = encoder_mask[:, layout]  # (B, R, S)
    counts = (~masked).sum(-1)
    v = int(counts.flatten()[0]) if counts.numel() else 0
    if not bool((counts == v).all()):
        raise ValueError(
            "visible tokens are not spread equally over the LG regions "
            f"(counts {counts.unique().tolist()}); use window-aware masking"
        )
    slots = torch.arange(layout.shape[1])
    key = masked.long() * layout.shape[1] + slots  # visible slots first, in slot order
    order = key.argsort(-1)[..., :v]
    return layout.expand(encoder_mask.shape[0], -1, -1).gather(-1, order)


# ----------------------------------------------------------------------------------------------
# Mask generators
# ----------------------------------------------------------------------------------------------


def _count(n: int, ratio: float, what: str) -> int:
    """Exact ``n·ratio`` as an int; ``ValueError`` when it is not integral."""
    x = n * ratio
    k = round(x)
    if abs(x - k) > RATIO_TOL * max(n, 1):
        raise ValueError(f"{what}: ratio {ratio} of {n} tokens is not an integer count")
    return k


def _choose(
    shape: tuple[int, ...], n_masked: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Bool ``shape``; exactly ``n_masked`` True along the last dim, uniformly at random."""
    noise = torch.rand(shape, generator=generator)
    ranks = noise.argsort(-1).argsort(-1)
    return ranks < n_masked


def tube_mask(
    batch_size: int,
    mask_ratio: float = 0.9,
    *,
    generator: torch.Generator | None = None,
    grid: tuple[int, int, int] = VIDEO_GRID,
) -> torch.Tensor:
    """Published tube masking: ``(B, T·H·W)``; one random spatial map per sample, tiled in time.

    ``mask_ratio`` 0.9 on 8×10×10 → 90 masked per slice, 80 visible tokens in all.
    """
    t, h, w = grid
    k = _count(h * w, mask_ratio, "tube mask")
    spatial = _choose((batch_size, h * w), k, generator)
    return repeat(spatial, "b hw -> b (t hw)", t=t)


def tube_window_mask(
    batch_size: int,
    mask_ratio: float = 0.9,
    *,
    generator: torch.Generator | None = None,
    grid: tuple[int, int, int] = VIDEO_GRID,
    window: tuple[int, int] = VIDEO_REGION[1:],
) -> torch.Tensor:
    """Window-aware tube masking: ``(B, T·H·W)``.

    Like :func:`tube_mask` (one spatial map tiled over time), but each spatial window (default
    5×10, the upper/lower face) gets exactly ``(1-ratio)·|window|`` visible positions — 5 per
    half per slice at 0.9, i.e. 10 per video LG region.
    """
    t, h, w = grid
    layout = region_layout((h, w), window)  # (Rs, Ss) spatial windows
    k = _count(layout.shape[1], mask_ratio, "tube-window mask")
    per_window = _choose((batch_size, *layout.shape), k, generator)  # (B, Rs, Ss)
    spatial = torch.empty(batch_size, h * w, dtype=torch.bool)
    spatial[:, layout.flatten()] = per_window.reshape(batch_size, -1)
    return repeat(spatial, "b hw -> b (t hw)", t=t)


def _running_cell_maps(grid: tuple[int, int, int], n_masked: int) -> torch.Tensor:
    """The 4 running-cell maps ``(4, T·H·W)``: map ``p`` starts the cell queue at pointer ``p``.

    A 2×2 cell reads the queue ``[1]*n_masked + [0]*(4-n_masked)`` cyclically from its pointer
    (cell slots in raster order); the pointer advances by one per time slice. With 2 masked this
    cycles top row → diagonal → bottom row → anti-diagonal.
    """
    t, h, w = grid
    if h % 2 or w % 2:
        raise ValueError(f"running-cell masking needs an even spatial grid, got {h}×{w}")
    queue = torch.tensor([True] * n_masked + [False] * (4 - n_masked))
    maps = torch.empty(4, t, h, w, dtype=torch.bool)
    for start in range(4):
        for ti in range(t):
            ptr = (start + ti) % 4
            cell = queue.roll(-ptr).reshape(2, 2)
            maps[start, ti] = cell.repeat(h // 2, w // 2)
    return maps.reshape(4, t * h * w)


def running_cell_mask(
    batch_size: int,
    mask_ratio: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    grid: tuple[int, int, int] = VIDEO_GRID,
) -> torch.Tensor:
    """VideoMAE-V2 running-cell mask: ``(B, T·H·W)``; ``4·ratio`` of each 2×2 cell masked.

    The start pointer is drawn uniformly from 4 per sample. Ratio 0.5 on 8×10×10 → 400 masked
    (not decoded) and 400 decoded positions, 50 per slice.
    """
    k = _count(4, mask_ratio, "running-cell mask")
    maps = _running_cell_maps(grid, k)
    start = torch.randint(4, (batch_size,), generator=generator)
    return maps[start]


def random_mask(
    batch_size: int,
    num_tokens: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Uniformly random mask ``(B, num_tokens)`` with exactly ``ratio·num_tokens`` masked."""
    k = _count(num_tokens, mask_ratio, "random mask")
    return _choose((batch_size, num_tokens), k, generator)


def window_random_mask(
    batch_size: int,
    mask_ratio: float = 0.8125,
    *,
    generator: torch.Generator | None = None,
    grid: tuple[int, ...] = AUDIO_GRID,
    window: tuple[int, ...] = AUDIO_REGION,
) -> torch.Tensor:
    """Random mask with the same masked count in every window: ``(B, prod(grid))``.

    Default: audio 16×8 with 4×4 windows, ratio 0.8125 → 13 masked and 3 visible per window,
    24 visible in all.
    """
    layout = region_layout(grid, window)
    k = _count(layout.shape[1], mask_ratio, "window random mask")
    per_window = _choose((batch_size, *layout.shape), k, generator)
    out = torch.empty(batch_size, _prod(grid), dtype=torch.bool)
    out[:, layout.flatten()] = per_window.reshape(batch_size, -1)
    return out


def video_encoder_mask(
    batch_size: int, cfg: Any, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``bool (B, 800)`` video encoder mask of ``cfg`` (as :func:`dual_masks`)."""
    if cfg.window_masking:
        return tube_window_mask(batch_size, cfg.mask_ratio_video, generator=generator)
    return tube_mask(batch_size, cfg.mask_ratio_video, generator=generator)


def dual_masks(
    batch_size: int, cfg: Any, *, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """The four masks of a pretraining batch, each ``bool (B, N)``, True = masked.

    ``cfg`` is a :class:`avfmae.config.PretrainConfig` (fields ``mask_ratio_video``,
    ``mask_ratio_audio``, ``decoder_mask_ratio_video``, ``decoder_mask_ratio_audio``,
    ``window_masking``). Keys (as in the reference vectors): ``encoder_mask_video`` (B, 800),
    ``decoder_mask_video`` (B, 800), ``encoder_mask_audio`` (B, 128), ``decoder_mask_audio``
    (B, 128). Draw order: video encoder, video decoder, audio encoder, audio decoder.
    """
    enc_v = video_encoder_mask(batch_size, cfg, generator=generator)
    dec_v = running_cell_mask(batch_size, cfg.decoder_mask_ratio_video, generator=generator)
    if cfg.window_masking:
        enc_a = window_random_mask(batch_size, cfg.mask_ratio_audio, generator=generator)
    else:
        enc_a = random_mask(batch_size, _prod(AUDIO_GRID), cfg.mask_ratio_audio,
                            generator=generator)
    dec_a = random_mask(batch_size, _prod(AUDIO_GRID), cfg.decoder_mask_ratio_audio,
                        generator=generator)
    return {
        "encoder_mask_video": enc_v,
        "decoder_mask_video": dec_v,
        "encoder_mask_audio": enc_a,
        "decoder_mask_audio": dec_a,
    }


# keys that separate mask randomness from augmentation randomness and from each other
MASK_STREAM = 1
VIEW_STREAM = 4


def sample_masks(cfg: Any, epoch: int, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dual masks of pretraining (``cfg``: the ``pretrain`` params section) for the clips
    ``index`` (B,), keyed by (seed, epoch, clip index): independent of batch composition, world
    size and resuming. Returns the :func:`dual_masks` keys, each with a leading (B, …)."""
    per_sample = [
        dual_masks(1, cfg, generator=make_generator(cfg.seed, MASK_STREAM, epoch, int(i)))
        for i in index
    ]
    return {k: torch.cat([m[k] for m in per_sample]) for k in per_sample[0]}


def sample_view_masks(cfg: Any, epoch: int, index: torch.Tensor) -> torch.Tensor:
    """``bool (B, 800)`` second-view video encoder masks (docs/model.md §5.6) for the clips
    ``index``, keyed like :func:`sample_masks` on a stream of their own."""
    return torch.cat([
        video_encoder_mask(1, cfg, generator=make_generator(cfg.seed, VIEW_STREAM, epoch, int(i)))
        for i in index
    ])


def _prod(xs: Any) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out
