"""Pretraining and fine-tuning losses, checked against the reference vector and brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avfmae.train import losses as L
from reference_data import load_reference

REFERENCE = "vector_pretrain_small.pt"


@pytest.fixture(scope="module")
def ref():
    return load_reference(REFERENCE)


def test_reference_losses_reproduced(ref):
    video, audio = ref["inputs"]["video"].float(), ref["inputs"]["audio"].float()
    m, out, want = ref["masks"], ref["outputs"], ref["losses"]
    vt, at = L.video_targets(video), L.audio_targets(audio)
    assert vt.shape == (2, 800, 1536) and at.shape == (2, 128, 256)
    loss_v = L.reconstruction_loss(out["video_recon"], vt, m["decoder_mask_video"],
                                   m["encoder_mask_video"])
    loss_a = L.reconstruction_loss(out["audio_recon"], at, m["decoder_mask_audio"],
                                   m["encoder_mask_audio"])
    loss_c = L.contrastive_loss_from_logits(out["logits_per_video"])
    assert loss_v.item() == pytest.approx(want["loss_video"], abs=1e-5)
    assert loss_a.item() == pytest.approx(want["loss_audio"], abs=1e-5)
    assert loss_c.item() == pytest.approx(want["loss_hcmcl"], abs=1e-5)
    total = loss_v + loss_a + want["loss_weight"] * loss_c
    assert total.item() == pytest.approx(want["loss_total"], abs=1e-5)
    # the logits-per-audio are the transposes
    for lv, la in zip(out["logits_per_video"], out["logits_per_audio"]):
        assert torch.equal(lv.t(), la)


def test_video_target_layout_by_hand():
    torch.manual_seed(0)
    video = torch.randn(1, 3, 4, 32, 32)
    t = L.video_targets(video, patch=16)
    assert t.shape == (1, 2 * 2 * 2, 2 * 16 * 16 * 3)
    # token (t=1, h=0, w=1): frames 2-3, rows 0-15, cols 16-31
    mean = torch.tensor(L.IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(L.IMAGENET_STD).view(3, 1, 1, 1)
    raw = video[0] * std + mean
    patch = raw[:, 2:4, 0:16, 16:32].permute(1, 2, 3, 0).reshape(512, 3)  # (p0 p1 p2, c)
    norm = (patch - patch.mean(0)) / (patch.std(0, unbiased=True) + 1e-6)
    norm = norm.reshape(2, 256, 3)
    expect = torch.cat([norm[:1], norm[1:] - norm[:1]]).reshape(-1)
    index = 1 * 4 + 0 * 2 + 1
    torch.testing.assert_close(t[0, index], expect, rtol=1e-5, atol=1e-5)
    plain = L.video_targets(video, patch=16, frame_diff=False)
    torch.testing.assert_close(plain[0, index], norm.reshape(-1), rtol=1e-5, atol=1e-5)


def test_reconstruction_loss_is_zero_for_perfect_prediction_and_counts_only_masked_decoded():
    torch.manual_seed(1)
    b, n, p = 2, 12, 5
    target = torch.randn(b, n, p)
    dec = torch.zeros(b, n, dtype=torch.bool)
    dec[:, ::2] = True  # decode the odd positions
    enc = torch.zeros(b, n, dtype=torch.bool)
    enc[:, :6] = True  # first six hidden from the encoder
    pred = L.select_decoded(target, dec).clone()
    assert L.reconstruction_loss(pred, target, dec, enc).item() == 0.0
    # corrupt a decoded but encoder-visible position: no effect
    pred_v = pred.clone()
    pred_v[:, -1] += 100.0  # position 11: visible
    assert L.reconstruction_loss(pred_v, target, dec, enc).item() == 0.0
    # corrupt position 1 (decoded, masked) of sample 0 by 1 in every value → e = 1 for it
    pred_m = pred.clone()
    pred_m[0, 0] += 1.0
    counted = (enc & ~dec).sum().item()  # positions 1, 3, 5 per sample → 6
    assert counted == 6
    assert L.reconstruction_loss(pred_m, target, dec, enc).item() == pytest.approx(1 / 6)


def test_reconstruction_loss_with_nothing_counted_is_zero_with_grad():
    pred = torch.randn(1, 2, 3, requires_grad=True)
    dec = torch.tensor([[False, False, True]])
    enc = torch.zeros(1, 3, dtype=torch.bool)
    loss = L.reconstruction_loss(pred, torch.randn(1, 3, 3), dec, enc)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def brute_force_hcmcl(video_levels, audio_levels, tau):
    total = 0.0
    for v, a in zip(video_levels, audio_levels):
        v = v.mean(1) if v.dim() == 3 else v
        a = a.mean(1) if a.dim() == 3 else a
        b = v.shape[0]
        vn = [x / math.sqrt(float((x * x).sum())) for x in v]
        an = [x / math.sqrt(float((x * x).sum())) for x in a]
        s = [[float((vn[i] * an[j]).sum()) / tau for j in range(b)] for i in range(b)]
        row = sum(-s[i][i] + math.log(sum(math.exp(x) for x in s[i])) for i in range(b)) / b
        col = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(b)))
                  for j in range(b)) / b
        total += 0.5 * (row + col)
    return total


def test_hierarchical_contrastive_matches_brute_force():
    torch.manual_seed(2)
    video = [torch.randn(5, 7, 16), torch.randn(5, 16), torch.randn(5, 3, 16)]
    audio = [torch.randn(5, 4, 16), torch.randn(5, 16), torch.randn(5, 9, 16)]
    got = L.hierarchical_contrastive_loss(video, audio, 0.07)
    assert got.item() == pytest.approx(brute_force_hcmcl(video, audio, 0.07), rel=1e-5)


def test_contrastive_from_features_matches_reference_logits_path():
    torch.manual_seed(3)
    v, a = torch.randn(4, 6, 8), torch.randn(4, 5, 8)
    logits = F.normalize(v.mean(1), dim=-1) @ F.normalize(a.mean(1), dim=-1).t() / 0.07
    assert L.contrastive_loss(v, a, 0.07).item() == pytest.approx(
        L.contrastive_loss_from_logits([logits]).item(), rel=1e-6)


def test_pretraining_losses_wiring(ref):
    video, audio = ref["inputs"]["video"].float(), ref["inputs"]["audio"].float()
    torch.manual_seed(4)
    lv, la = [torch.randn(2, 80, 8)], [torch.randn(2, 24, 8)]
    out = L.pretraining_losses(video, audio, ref["masks"], ref["outputs"]["video_recon"],
                               ref["outputs"]["audio_recon"], lv, la)
    assert out["loss_video"].item() == pytest.approx(ref["losses"]["loss_video"], abs=1e-5)
    expect = out["loss_video"] + out["loss_audio"] + 0.0025 * out["loss_hcmcl"]
    assert out["loss_total"].item() == pytest.approx(expect.item())


def test_soft_target_ce_equals_ce_for_hard_targets():
    torch.manual_seed(5)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    soft = F.one_hot(labels, 4).float()
    assert L.soft_target_cross_entropy(logits, soft).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_regression_losses():
    t = torch.tensor([[0.1, 0.5], [0.4, 0.2], [0.9, 0.7], [0.3, 0.3]])
    assert L.regression_loss(t, t, "ccc").item() == pytest.approx(0.0, abs=1e-6)
    assert L.regression_loss(t, t, "mse").item() == 0.0
    # constant predictions: CCC 0 → loss 1
    const = torch.full_like(t, 0.5)
    assert L.ccc_loss(const, t).item() == pytest.approx(1.0, abs=1e-6)
    # matches the numpy metric
    from avfmae.eval.metrics import ccc

    p = t + torch.tensor([[0.05, -0.1], [0.1, 0.0], [-0.2, 0.1], [0.0, 0.05]])
    expect = 1 - ccc(p.numpy(), t.numpy()).mean()
    assert L.ccc_loss(p, t).item() == pytest.approx(expect, abs=1e-6)
    with pytest.raises(ValueError, match="unknown regression loss"):
        L.regression_loss(p, t, "l1")


def test_contrastive_loss_stays_fp32_under_autocast():
    torch.manual_seed(6)
    v, a = torch.randn(4, 3, 16), torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = L.contrastive_loss(v.bfloat16(), a.bfloat16(), 0.07)
    want = L.contrastive_loss(v.bfloat16().float(), a.bfloat16().float(), 0.07)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_second_view_term_is_infonce_between_the_views_weighted_into_the_total(ref):
    video, audio = ref["inputs"]["video"].float(), ref["inputs"]["audio"].float()
    torch.manual_seed(6)
    lv, la, view = [torch.randn(2, 80, 8)], [torch.randn(2, 24, 8)], torch.randn(2, 8)
    common = (video, audio, ref["masks"], ref["outputs"]["video_recon"],
              ref["outputs"]["audio_recon"], lv, la)
    off = L.pretraining_losses(*common)
    on = L.pretraining_losses(*common, video_view=view, view_weight=0.5, view_temperature=0.1)
    assert "loss_view" not in off
    assert on["loss_view"].item() == pytest.approx(brute_force_hcmcl(lv, [view], 0.1), rel=1e-5)
    assert on["loss_total"].item() == pytest.approx(
        (off["loss_total"] + 0.5 * on["loss_view"]).item(), rel=1e-6)
