"""Parameter groups, layer decay, LR schedule, mixup/cutmix and mixed precision."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avfmae.train import amp, mixup, optim


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.lg_region_tokens = nn.Parameter(torch.zeros(8, 4))
        self.encoder.pos_embed = nn.Parameter(torch.zeros(1, 10, 4))
        self.encoder.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.encoder.norm = nn.LayerNorm(4)
        self.mask_token_audio = nn.Parameter(torch.zeros(1, 1, 4))
        self.layer_weights_video = nn.Parameter(torch.ones(2))
        self.head = nn.Linear(4, 3)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_no_decay_matches_by_suffix_and_ndim():
    groups = optim.param_groups(Toy().named_parameters(), weight_decay=0.05)
    by_wd = {g["weight_decay"]: set(g["names"]) for g in groups}
    assert by_wd[0.0] == {
        "encoder.lg_region_tokens", "encoder.pos_embed", "encoder.blocks.0.bias",
        "encoder.blocks.1.bias", "encoder.norm.weight", "encoder.norm.bias",
        "mask_token_audio", "layer_weights_video", "head.bias",
    }
    assert by_wd[0.05] == {"encoder.blocks.0.weight", "encoder.blocks.1.weight", "head.weight"}
    assert not any("frozen" in n for g in groups for n in g["names"])


def test_layer_decay_scales():
    def layer_id(name: str) -> int:
        if name.startswith("encoder.blocks."):
            return int(name.split(".")[2]) + 1
        if "pos_embed" in name:
            return 0
        return 3

    opt = optim.build_optimizer(Toy(), lr=1e-3, weight_decay=0.05, layer_id=layer_id,
                                num_layers=2, layer_decay=0.5)
    scales = {n: g["lr_scale"] for g in opt.param_groups for n in g["names"]}
    assert scales["encoder.pos_embed"] == 0.5 ** 3
    assert scales["encoder.blocks.0.weight"] == 0.5 ** 2
    assert scales["encoder.blocks.1.bias"] == 0.5 ** 1
    assert scales["head.weight"] == 1.0
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert lrs["encoder.blocks.0.weight"] == pytest.approx(1e-3 * 0.25)


def test_lr_schedule_warmup_then_cosine():
    kw = {"peak_lr": 1.0, "min_lr": 0.1, "warmup_steps": 10, "total_steps": 110}
    assert optim.lr_at(0, **kw) == 0.0
    assert optim.lr_at(5, **kw) == pytest.approx(0.5)
    assert optim.lr_at(10, **kw) == pytest.approx(1.0)
    assert optim.lr_at(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert optim.lr_at(110, **kw) == pytest.approx(0.1)
    assert optim.lr_at(500, **kw) == pytest.approx(0.1)
    values = [optim.lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert optim.scaled_lr(1.5e-4, 512) == pytest.approx(3e-4)


def test_scheduler_applies_scales_and_round_trips_state():
    model = Toy()
    opt = optim.build_optimizer(model, lr=1.0, weight_decay=0.0,
                                layer_id=lambda n: 1 if "head" in n else 0, num_layers=0,
                                layer_decay=0.5)
    sched = optim.WarmupCosineSchedule(opt, peak_lr=2.0, min_lr=0.0, warmup_steps=4,
                                       total_steps=20)
    assert all(g["lr"] == 0.0 for g in opt.param_groups)
    for _ in range(6):
        sched.step()
    expect = optim.lr_at(6, peak_lr=2.0, min_lr=0.0, warmup_steps=4, total_steps=20)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(expect * g["lr_scale"])
    state = sched.state_dict()
    other = optim.WarmupCosineSchedule(opt, peak_lr=9.0, min_lr=0.0, warmup_steps=1,
                                       total_steps=2)
    other.load_state_dict(state)
    assert other.last_step == 6 and other.lr == pytest.approx(expect)
    assert all(isinstance(v, (int, float)) for v in state.values())


def test_mixup_mixes_both_modalities_with_the_same_lambda():
    torch.manual_seed(0)
    video, audio = torch.randn(4, 3, 2, 8, 8), torch.randn(4, 1, 20, 6)
    labels = torch.tensor([0, 1, 2, 1])
    mix = mixup.MixupCutmix(3, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, seed=1)
    v, a, y = mix(video, audio, labels)
    lam = mix.last_lam
    assert mix.last_mode == "mixup"
    torch.testing.assert_close(v, lam * video + (1 - lam) * video.flip(0))
    torch.testing.assert_close(a, lam * audio + (1 - lam) * audio.flip(0))
    hard = mixup.smooth_one_hot(labels, 3, 0.1)
    assert hard[0].tolist() == pytest.approx([0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3])
    torch.testing.assert_close(y, lam * hard + (1 - lam) * hard.flip(0))
    torch.testing.assert_close(y.sum(1), torch.ones(4))


def test_cutmix_box_and_audio_segment_share_the_proportion():
    video = torch.arange(2.0).view(2, 1, 1, 1, 1).expand(2, 3, 4, 40, 40).contiguous()
    audio = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 200, 8).contiguous()
    labels = torch.tensor([0, 1])
    mix = mixup.MixupCutmix(2, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, seed=3)
    for _ in range(10):
        v, a, y = mix(video, audio, labels)
        lam = mix.last_lam
        assert mix.last_mode == "cutmix"
        pasted_v = (v[0] == 1).float().mean().item()  # sample 0 got pixels of sample 1
        pasted_a = (a[0] == 1).float().mean().item()
        assert pasted_v == pytest.approx(1 - lam)
        assert abs(pasted_a - (1 - lam)) <= 0.5 / 200 + 1e-6  # rounding to whole frames
        # same box in every frame and channel; a time segment over all mel bins in audio
        assert (v[0] == v[0, :1, :1]).all()
        assert (a[0] == a[0, :, :, :1]).all()
        assert y[0].tolist() == pytest.approx([lam, 1 - lam])


def test_published_video_only_mixing_leaves_audio_untouched():
    video, audio = torch.randn(4, 3, 2, 8, 8), torch.randn(4, 1, 20, 6)
    mix = mixup.MixupCutmix(3, mix_audio=False, seed=0)
    for _ in range(5):
        v, a, _ = mix(video, audio, torch.tensor([0, 1, 2, 0]))
        assert torch.equal(a, audio)


def test_mixup_state_round_trip_and_prob_zero():
    mix = mixup.MixupCutmix(3, seed=5)
    state = mix.state_dict()
    x = torch.randn(2, 3, 2, 8, 8)
    first = mix(x, None, torch.tensor([0, 1]))[0]
    mix.load_state_dict(state)
    assert torch.equal(mix(x, None, torch.tensor([0, 1]))[0], first)
    off = mixup.MixupCutmix(3, prob=0.0, label_smoothing=0.0)
    v, _, y = off(x, None, torch.tensor([0, 1]))
    assert torch.equal(v, x) and y.tolist() == [[1, 0, 0], [0, 1, 0]]


def test_amp_resolution(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp.resolve_amp_dtype("auto", "cpu") is None
    assert amp.resolve_amp_dtype("off", "cuda") is None
    assert amp.resolve_amp_dtype("bf16", "cpu") == torch.bfloat16
    assert amp.resolve_amp_dtype("fp16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="not one of"):
        amp.resolve_amp_dtype("fp8", "cpu")
    p = amp.Precision.create("auto", "cpu")
    assert p.name == "fp32" and p.scaler is None
    b = amp.Precision.create("bf16", "cpu")
    with b.autocast():
        out = nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16


def test_optimizer_step_clips_and_zeroes():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (model(torch.randn(8, 4) * 100).pow(2)).mean()
    before = model.weight.detach().clone()
    norm = amp.optimizer_step(loss, opt, amp.Precision.create("off", "cpu"), clip_grad=1.0)
    assert norm is not None and norm.item() > 1.0
    step = (model.weight.detach() - before).norm().item()
    assert step <= 0.1 * 1.0 + 1e-6
    assert model.weight.grad is None
    assert math.isfinite(step)


def test_fp16_scaler_skips_non_finite_steps():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prec = amp.Precision.create("fp16", "cpu")
    assert prec.scaler is not None
    before = model.weight.detach().clone()
    loss = model(torch.tensor([[float("inf"), 1.0]])).sum()
    amp.optimizer_step(loss, opt, prec, clip_grad=1.0)
    assert torch.equal(model.weight.detach(), before)
    assert prec.state_dict()["scale"] < 65536.0
