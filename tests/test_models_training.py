"""Trainability: every parameter gets a gradient (DDP without find_unused_parameters), batch-1
pretraining, modalities and heads, mask handling, layer decay ids, autocast."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from avfmae.models import create_model
from avfmae.models.regions import RegionGrid


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: these models are small, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(batch, 3, 16, 160, 160, generator=g)
    return video, torch.randn(batch, 1, 256, 128, generator=g)


def _window_masks(batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    v_order = RegionGrid((8, 10, 10), (2, 5, 10)).window_order()
    a_order = RegionGrid((16, 8), (4, 4)).window_order()
    video = torch.ones(batch, 800, dtype=torch.bool)
    audio = torch.ones(batch, 128, dtype=torch.bool)
    video_dec = torch.ones(batch, 800, dtype=torch.bool)
    for b in range(batch):
        for r in range(8):
            video[b, v_order[r, torch.randperm(100, generator=g)[:10]]] = False
            audio[b, a_order[r, torch.randperm(16, generator=g)[:3]]] = False
        video_dec[b, torch.randperm(800, generator=g)[:400]] = False
    return video, audio, video_dec, None


def _tube_masks(batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    video = torch.ones(batch, 8, 100, dtype=torch.bool)
    audio = torch.ones(batch, 128, dtype=torch.bool)
    for b in range(batch):
        video[b, :, torch.randperm(100, generator=g)[:10]] = False
        audio[b, torch.randperm(128, generator=g)[:24]] = False
    return video.flatten(1), audio


def _pretrain_loss(out) -> torch.Tensor:
    loss = 0.0
    pairs = ((out.video_recon, out.video_loss_mask), (out.audio_recon, out.audio_loss_mask))
    for recon, mask in pairs:
        per_row = recon.pow(2).mean(-1)
        loss = loss + (per_row * mask).sum() / mask.sum().clamp(min=1)
    labels = torch.arange(out.logits_per_video[0].shape[0])
    for lv, la in zip(out.logits_per_video, out.logits_per_audio):
        loss = loss + 0.5 * (F.cross_entropy(lv, labels) + F.cross_entropy(la, labels))
    return loss


def _assert_all_grads(model: torch.nn.Module, structurally_zero: str = "^$") -> None:
    """Every parameter takes part in the graph (so DDP needs no find_unused_parameters) and
    has a non-zero gradient, except those matching ``structurally_zero``."""
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    zero = {n for n, p in model.named_parameters() if not p.grad.any()}
    expected = {n for n, _ in model.named_parameters() if re.search(structurally_zero, n)}
    assert zero == expected, f"all-zero gradients: {sorted(zero ^ expected)}"


@pytest.mark.parametrize("reference_compatible", [False, True])
def test_classifier_gradients_reach_every_parameter(reference_compatible):
    torch.manual_seed(0)
    model = create_model("tiny", num_classes={"mafw": 4, "dfew": 3},
                         reference_compatible=reference_compatible, head_init_scale=1.0,
                         drop_path_rate=0.0).train()  # stochastic depth may zero a branch
    video, audio = _inputs(2)
    logits = model(video, audio)
    (logits["mafw"].pow(2).sum() + logits["dfew"].pow(2).sum()).backward()
    _assert_all_grads(model)


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_single_modality_classifier(modality):
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5, modality=modality, head_init_scale=1.0,
                         drop_path_rate=0.0).train()
    assert not hasattr(model, "fusion")
    assert hasattr(model, "audio_encoder") == (modality == "audio")
    video, audio = _inputs(1)
    out = model(video if modality == "video" else None, audio if modality == "audio" else None)
    assert out.shape == (1, 5) and model.num_features == 64
    out.pow(2).sum().backward()
    _assert_all_grads(model)
    assert model.num_layers == 2 and model.layer_id("head.weight") == 3


def test_heads_api():
    model = create_model("tiny", num_classes={"a": 3, "b": 4}).eval()
    video, audio = _inputs(1)
    with torch.no_grad():
        features = model.forward_features(video, audio)
        assert features.shape == (1, 128)
        assert model.forward_head(features, "b").shape == (1, 4)
    with pytest.raises(KeyError):
        model.forward_head(features, "c")
    model.reset_classifier(6)
    assert model.head.out_features == 6 and not hasattr(model, "heads")
    with pytest.raises(ValueError, match="single head"):
        model.forward_head(features, "a")


@pytest.mark.parametrize("mode", ["window", "rank", "reference"])
def test_pretrain_gradients_reach_every_parameter(mode):
    torch.manual_seed(0)
    kwargs = {
        "window": {}, "rank": {"partition": "rank"}, "reference": {"reference_compatible": True}
    }[mode]
    model = create_model("tiny", pretrain=True, **kwargs).train()
    video, audio = _inputs(2)
    masks = _window_masks(2) if mode == "window" else _tube_masks(2)
    _pretrain_loss(model(video, audio, *masks)).backward()
    # Structural zeros, as in the published model; fine-tuning trains these parameters:
    # pretraining drops the region tokens after the last LG block, so that block's local →
    # region step cannot reach the loss; and HAFE's cross-attention has a single key (the joint
    # query is one token), so its softmax is constant and its query side has no effect.
    _assert_all_grads(
        model,
        r"_encoder\.blocks\.1\.aggregate_|hafe\.cross_attn\.q(\.|_bias)|hafe\.\w+\.query_norm",
    )


def test_default_pretraining_trains_at_batch_one():
    """docs/model.md F17: the ER LayerNorm makes batch 1 trainable; the published BatchNorm
    cannot (one value per channel)."""
    video, audio = _inputs(1)
    video_mask, audio_mask = _tube_masks(1)
    model = create_model("tiny", pretrain=True, partition="rank").train()
    out = model(video, audio, video_mask, audio_mask)
    assert out.video_recon.shape == (1, 720, 1536)  # no decoder mask: every hidden position
    assert out.video_loss_mask.all()
    _pretrain_loss(out).backward()
    reference = create_model("tiny", pretrain=True, reference_compatible=True).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        reference(video, audio, video_mask, audio_mask)


def test_mask_validation():
    model = create_model("tiny", pretrain=True)
    video, audio = _inputs(2)
    video_mask, audio_mask = _tube_masks(2)
    with pytest.raises(ValueError, match="not window-aware"):
        model(video, audio, video_mask, audio_mask)
    uneven = audio_mask.clone()
    uneven[0, (~uneven[0]).nonzero()[0]] = True
    with pytest.raises(ValueError, match="same number visible"):
        create_model("tiny", pretrain=True, partition="rank")(video, audio, video_mask, uneven)
    with pytest.raises(ValueError, match="800 tokens|expects"):
        model(video, audio, video_mask[:, :400], audio_mask)
    with pytest.raises(ValueError, match="or an index"):
        model(video, audio)
    with pytest.raises(ValueError, match="rank partition"):
        create_model("tiny", pretrain=True, reference_compatible=True, partition="window")


def test_window_partition_is_order_equivariant():
    """With window masks each token is processed with its own region and position, so the
    reconstructions do not depend on how the visible tokens are listed inside the model."""
    torch.manual_seed(0)
    model = create_model("tiny", pretrain=True).eval()
    video, audio = _inputs(2)
    masks = _window_masks(2)
    index = model.index_masks(*masks)
    assert torch.equal(index.video.position, index.video.layout.flatten(1))
    region = RegionGrid((8, 10, 10), (2, 5, 10)).region_of_token()
    assert torch.equal(region[index.video.layout], torch.arange(8).view(1, 8, 1).expand(2, 8, 10))
    with torch.no_grad():
        out = model.forward_indexed(video, audio, index)
        assert torch.equal(model(video, audio, index=index).video_recon, out.video_recon)
        # Shuffle slots within each region (same regions, same positions): same reconstructions.
        perm = torch.randperm(10)
        index.video.layout = index.video.layout[:, :, perm]
        index.video.position = index.video.layout.flatten(1)
        shuffled = model.forward_indexed(video, audio, index)
    torch.testing.assert_close(shuffled.video_recon, out.video_recon, rtol=1e-4, atol=1e-4)


def test_no_weight_decay_names():
    pretrainer = create_model("tiny", pretrain=True)
    assert pretrainer.no_weight_decay() == {
        "video_encoder.region_tokens", "audio_encoder.region_tokens",
        "video_decoder.mask_token", "audio_decoder.mask_token",
    }
    classifier = create_model("tiny")
    assert classifier.no_weight_decay() == {
        "video_encoder.region_tokens", "audio_encoder.region_tokens",
        "video_layer_weights", "audio_layer_weights",
    }


def test_layer_ids_and_decay_scales():
    with torch.device("meta"):
        model = create_model("huge")
    L = model.num_layers
    assert L == 17
    assert model.layer_id("video_encoder.patch_embed.proj.weight") == 0
    assert model.layer_id("audio_encoder.blocks.14.mlp.fc2.bias") == 15
    assert model.layer_id("fusion.units.1.video_gate.weight") == 17
    for top in ("fusion.refine.input_proj.weight", "fusion.hafe.cross_attn.q.weight", "head.bias",
                "fc_norm.weight", "video_layer_weights", "video_encoder.region_tokens",
                "video_encoder.norm.weight"):
        assert model.layer_id(top) == L + 1
    ids = {model.layer_id(n) for n, _ in model.named_parameters()}
    assert ids == set(range(L + 2))
    assert min(0.75 ** (L + 1 - i) for i in ids) == pytest.approx(0.75**18)  # docs/model.md §6.3


def test_autocast_keeps_outputs_close():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=4, head_init_scale=1.0).eval()
    video, audio = _inputs(1)
    with torch.no_grad():
        full = model(video, audio)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(video, audio)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05 * full.abs().max().item())
    pretrainer = create_model("tiny", pretrain=True, partition="rank").eval()
    masks = _tube_masks(1)
    with torch.no_grad():
        full = pretrainer(video, audio, *masks)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = pretrainer(video, audio, *masks)
    for a, b in ((half.video_recon, full.video_recon), (half.audio_recon, full.audio_recon)):
        torch.testing.assert_close(a.float(), b, rtol=0.05, atol=0.05 * b.abs().max().item())


@pytest.mark.parametrize("scale", [1e-3, 1.0])
def test_finetune_head_init_scale_reaches_fresh_heads(scale):
    """``finetune.head_init_scale`` multiplies the fresh heads' trunc-normal(0.02) weights."""
    import dataclasses

    from avfmae.config import Params
    from avfmae.models.build import build_classifier

    params = Params()
    params = dataclasses.replace(
        params, finetune=dataclasses.replace(params.finetune, head_init_scale=scale))
    head = build_classifier(params, {"synthetic": 6}).heads["synthetic"]
    assert head.weight.std().item() == pytest.approx(0.02 * scale, rel=0.15)
    assert not head.bias.any()


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_one_modality_pretraining_has_only_its_own_parts(modality):
    """Unimodal pretraining: that modality's encoder and decoder only (no fusion, no other
    stream), names shared with the audio-visual model, every parameter trained except the last
    LG block's local → region step (structurally zero, as in the audio-visual model)."""
    torch.manual_seed(0)
    model = create_model("tiny", pretrain=True, modality=modality).train()
    av_names = {n for n, _ in create_model("tiny", pretrain=True).named_parameters()}
    names = {n for n, _ in model.named_parameters()}
    assert {n.split(".")[0] for n in names} == {f"{modality}_encoder", f"{modality}_decoder"}
    assert names < av_names
    video, audio = _inputs(2)
    masks = _window_masks(2)
    keep = {"video": (video, None), "audio": (None, audio)}[modality]
    out = model(*keep, *masks)
    other = "audio" if modality == "video" else "video"
    assert getattr(out, f"{other}_recon") is None and not out.logits_per_video
    assert getattr(out, f"{modality}_recon").shape[-1] == {"video": 1536, "audio": 256}[modality]
    recon, mask = getattr(out, f"{modality}_recon"), getattr(out, f"{modality}_loss_mask")
    ((recon.pow(2).mean(-1) * mask).sum() / mask.sum()).backward()
    _assert_all_grads(model, r"_encoder\.blocks\.1\.aggregate_")
    with pytest.raises(ValueError, match=f"needs the {modality} input"):
        model(None, None, *masks)


@pytest.mark.parametrize("modality", ["av", "video"])
def test_second_view_is_the_video_encoder_under_another_mask(modality):
    """The second masked view (docs/model.md §5.6) re-encodes the video with the same encoder:
    under the first view's own mask it gives the first view's last-level embedding, and its
    term's gradient reaches the video encoder only."""
    torch.manual_seed(0)
    model = create_model("tiny", pretrain=True, modality=modality, drop_path_rate=0.0).eval()
    video, audio = _inputs(2)
    if modality == "video":
        audio = None
    video_mask, audio_mask, _, _ = _window_masks(2)
    other, _, _, _ = _window_masks(2, seed=5)
    with torch.no_grad():
        same = model(video, audio, video_mask, audio_mask, video_view_mask=video_mask)
        plain = model(video, audio, video_mask, audio_mask)
    assert plain.video_view_embedding is None
    assert same.video_view_embedding.shape == (2, 64)
    torch.testing.assert_close(same.video_view_embedding, same.video_embeddings[-1])

    model.train()
    out = model(video, audio, video_mask, audio_mask, video_view_mask=other)
    assert not torch.allclose(out.video_view_embedding, out.video_embeddings[-1])
    (out.video_view_embedding @ torch.randn(64, 3)).pow(2).sum().backward()
    touched = {n.split(".")[0] for n, p in model.named_parameters()
               if p.grad is not None and p.grad.any()}
    assert touched == {"video_encoder"}


def test_audio_model_ignores_the_second_view_mask():
    model = create_model("tiny", pretrain=True, modality="audio").eval()
    _, audio = _inputs(1)
    video_mask, audio_mask, _, _ = _window_masks(1)
    with torch.no_grad():
        out = model(None, audio, None, audio_mask, video_view_mask=video_mask)
    assert out.video_view_embedding is None
