"""Dual masking: exact counts, equal visible counts per LG region, determinism, validation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from avfmae import masking as M
from avfmae.mask_ratios import allowed_ratios, validate_ratios
from reference_data import load_reference
from avfmae.config import ConfigError, PretrainConfig

REFERENCE = "vector_pretrain_small.pt"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_region_layouts_match_reference_indexing():
    video = M.video_region_layout()
    assert video.shape == (8, 100)
    for flat in range(800):
        t, h, w = flat // 100, (flat // 10) % 10, flat % 10
        r, s = 2 * (t // 2) + h // 5, (t % 2) * 50 + (h % 5) * 10 + w
        assert video[r, s] == flat
    audio = M.audio_region_layout()
    assert audio.shape == (8, 16)
    for flat in range(128):
        tt, f = flat // 8, flat % 8
        assert audio[2 * (tt // 4) + f // 4, (tt % 4) * 4 + f % 4] == flat
    assert sorted(video.flatten().tolist()) == list(range(800))
    assert sorted(audio.flatten().tolist()) == list(range(128))


@pytest.mark.parametrize("window", [True, False])
def test_dual_mask_counts(window):
    cfg = dataclasses.replace(PretrainConfig(), window_masking=window)
    m = M.dual_masks(16, cfg, generator=gen())
    assert m["encoder_mask_video"].shape == (16, 800) and m["encoder_mask_video"].dtype == torch.bool
    assert ((~m["encoder_mask_video"]).sum(1) == 80).all()
    assert ((~m["decoder_mask_video"]).sum(1) == 400).all()
    assert ((~m["encoder_mask_audio"]).sum(1) == 24).all()
    assert ((~m["decoder_mask_audio"]).sum(1) == 64).all()
    # tubes: the same spatial map in every slice
    enc = m["encoder_mask_video"].reshape(16, 8, 100)
    assert (enc == enc[:, :1]).all()
    # running cell: 50 decoded per slice, 2 of every 2x2 cell
    dec = m["decoder_mask_video"].reshape(16, 8, 5, 2, 5, 2)
    assert (dec.sum(dim=(3, 5)) == 2).all()


def test_window_masks_have_equal_visible_count_per_region():
    m = M.dual_masks(32, PretrainConfig(), generator=gen(3))
    v = M.visible_per_region(m["encoder_mask_video"], M.video_region_layout())
    a = M.visible_per_region(m["encoder_mask_audio"], M.audio_region_layout())
    assert (v == 10).all() and (a == 3).all()
    # 5 visible per 5x10 half of each slice
    halves = (~m["encoder_mask_video"]).reshape(32, 8, 2, 50).sum(-1)
    assert (halves == 5).all()
    idx = M.region_visible_indices(m["encoder_mask_video"], M.video_region_layout())
    assert idx.shape == (32, 8, 10)
    assert (idx.diff(dim=-1) > 0).all()
    assert (~m["encoder_mask_video"].gather(1, idx.flatten(1))).all()
    aidx = M.region_visible_indices(m["encoder_mask_audio"], M.audio_region_layout())
    assert aidx.shape == (32, 8, 3)


def test_region_visible_indices_rejects_unequal_regions():
    mask = torch.ones(1, 128, dtype=torch.bool)
    mask[0, :24] = False  # all visible tokens in the first rows → unequal regions
    with pytest.raises(ValueError, match="window-aware"):
        M.region_visible_indices(mask, M.audio_region_layout())


def test_masks_are_deterministic_given_a_seed_and_vary_otherwise():
    cfg = PretrainConfig()
    a = M.dual_masks(4, cfg, generator=gen(7))
    b = M.dual_masks(4, cfg, generator=gen(7))
    c = M.dual_masks(4, cfg, generator=gen(8))
    for k in a:
        assert torch.equal(a[k], b[k])
    assert not torch.equal(a["encoder_mask_video"], c["encoder_mask_video"])
    assert not torch.equal(a["encoder_mask_audio"], c["encoder_mask_audio"])


def test_running_cell_maps_match_the_reference_vector():
    """The reference decoder masks (official generator) are among our 4 running-cell maps."""
    ref = load_reference(REFERENCE)["masks"]["decoder_mask_video"]
    maps = M._running_cell_maps(M.VIDEO_GRID, 2)
    for row in ref:
        assert any(torch.equal(row, mp) for mp in maps)
    # and all 4 start pointers occur
    seen = M.running_cell_mask(64, 0.5, generator=gen())
    assert len({tuple(r.nonzero().flatten()[:4].tolist()) for r in seen}) == 4


def test_plain_generators_are_uniform_enough():
    m = M.random_mask(4000, 128, 0.8125, generator=gen())
    freq = (~m).float().mean(0)
    assert torch.allclose(freq, torch.full_like(freq, 24 / 128), atol=0.03)
    t = M.tube_mask(2000, 0.9, generator=gen())
    assert torch.allclose((~t).float().mean(0), torch.full((800,), 0.1), atol=0.03)


@pytest.mark.parametrize(
    ("field", "value", "nearest"),
    [
        ("mask_ratio_audio", 0.8, "0.75 or 0.8125"),
        ("mask_ratio_video", 0.75, "0.74 or 0.76"),
        ("decoder_mask_ratio_video", 0.6, "0.5 or 0.75"),
        ("decoder_mask_ratio_audio", 1.0, "0.992188"),
    ],
)
def test_validate_ratios_rejects_and_names_allowed_values(field, value, nearest):
    cfg = dataclasses.replace(PretrainConfig(), **{field: value})
    with pytest.raises(ConfigError, match=rf"pretrain\.{field}: {value!r} is not allowed") as err:
        validate_ratios(cfg)
    assert nearest in str(err.value) and "All allowed:" in str(err.value)


def test_validate_ratios_accepts_defaults_and_allowed_values():
    validate_ratios(PretrainConfig())
    for field in ("mask_ratio_video", "mask_ratio_audio",
                  "decoder_mask_ratio_video", "decoder_mask_ratio_audio"):
        for value in allowed_ratios(field):
            validate_ratios(dataclasses.replace(PretrainConfig(), **{field: value}))
    assert 0.9 in allowed_ratios("mask_ratio_video")
    assert 0.8125 in allowed_ratios("mask_ratio_audio")


def test_other_allowed_ratio_gives_exact_counts():
    cfg = dataclasses.replace(PretrainConfig(), mask_ratio_video=0.8, mask_ratio_audio=0.75,
                              decoder_mask_ratio_video=0.25, decoder_mask_ratio_audio=0.25)
    m = M.dual_masks(3, cfg, generator=gen())
    assert ((~m["encoder_mask_video"]).sum(1) == 160).all()
    assert ((~m["encoder_mask_audio"]).sum(1) == 32).all()
    assert ((~m["decoder_mask_video"]).sum(1) == 600).all()
    assert ((~m["decoder_mask_audio"]).sum(1) == 96).all()
    with pytest.raises(ValueError, match="not an integer count"):
        M.window_random_mask(1, 0.8)


def test_second_view_masks_are_per_clip_like_the_first_from_their_own_stream():
    cfg = PretrainConfig()
    index = torch.tensor([3, 9])
    view = M.sample_view_masks(cfg, 2, index)
    first = M.sample_masks(cfg, 2, index)["encoder_mask_video"]
    assert view.shape == first.shape == (2, 800) and view.dtype == torch.bool
    assert torch.equal((~view).sum(1), (~first).sum(1))
    assert not torch.equal(view, first)
    assert torch.equal(M.sample_view_masks(cfg, 2, index[1:]), view[1:])  # batch-independent
    assert not torch.equal(M.sample_view_masks(cfg, 3, index), view)
