"""Scale registry, parameter counts, output shapes at every scale, timm registration."""

from __future__ import annotations

import pytest
import timm
import torch

from avfmae.models import (
    SCALES,
    AVFClassifier,
    AVFPretrain,
    create_model,
    get_scale,
    scale_names,
)
from avfmae.models.regions import RegionGrid


FINETUNE_PARAMS = {"base": 169_122_851, "large": 303_233_319, "huge": 521_309_229}
PRETRAIN_PARAMS = {"base": 187_942_660, "large": 336_322_308, "huge": 572_665_092}
BIG = ("base", "large", "huge")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: these models are small, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def published_style_masks(batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Tube mask (80/800 visible), 400 decoded video positions; 24/128 visible and 64 decoded
    audio positions (docs/model.md §5.1)."""
    g = torch.Generator().manual_seed(seed)
    video = torch.ones(batch, 8, 100, dtype=torch.bool)
    video_dec = torch.ones(batch, 800, dtype=torch.bool)
    audio = torch.ones(batch, 128, dtype=torch.bool)
    audio_dec = torch.ones(batch, 128, dtype=torch.bool)
    for b in range(batch):
        video[b, :, torch.randperm(100, generator=g)[:10]] = False
        video_dec[b, torch.randperm(800, generator=g)[:400]] = False
        audio[b, torch.randperm(128, generator=g)[:24]] = False
        audio_dec[b, torch.randperm(128, generator=g)[:64]] = False
    return video.flatten(1), audio, video_dec, audio_dec


def window_masks(batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Window-aware masks: 10 of 100 visible per video region, 3 of 16 per audio region."""
    g = torch.Generator().manual_seed(seed)
    video = torch.ones(batch, 800, dtype=torch.bool)
    audio = torch.ones(batch, 128, dtype=torch.bool)
    v_grid = RegionGrid((8, 10, 10), (2, 5, 10)).window_order()
    a_grid = RegionGrid((16, 8), (4, 4)).window_order()
    for b in range(batch):
        for r in range(8):
            video[b, v_grid[r, torch.randperm(100, generator=g)[:10]]] = False
            audio[b, a_grid[r, torch.randperm(16, generator=g)[:3]]] = False
    _, _, video_dec, audio_dec = published_style_masks(batch, seed)
    return video, audio, video_dec, audio_dec


@pytest.fixture(scope="module")
def meta_models() -> dict[str, tuple[AVFClassifier, AVFPretrain]]:
    """The published scales built on the meta device (11 classes), shared by the tests below."""
    models = {}
    with torch.device("meta"):
        for name in BIG:
            models[name] = (create_model(name, num_classes=11), create_model(name, pretrain=True))
    return models


@pytest.mark.parametrize("name", BIG)
def test_parameter_counts(meta_models, name):
    classifier, pretrainer = meta_models[name]
    assert _count(classifier) == FINETUNE_PARAMS[name]
    assert _count(pretrainer) == PRETRAIN_PARAMS[name]


def test_parameter_counts_other_heads_and_er_norm(meta_models):
    classifier = meta_models["huge"][0]
    with torch.device("meta"):
        classifier.reset_classifier(4)
        assert _count(classifier) == 521_298_470
        classifier.reset_classifier(11)
        # The ER norm does not change the count (LayerNorm and BatchNorm both have 2C affine).
        assert _count(create_model("base", reference_compatible=True)) == FINETUNE_PARAMS["base"]


def test_published_scale_fields():
    b, l, h = SCALES["base"], SCALES["large"], SCALES["huge"]
    def sizes(s):
        return (s.embed_dim, s.num_heads, s.video_depth, s.audio_depth, s.fusion_depth,
                s.decoder_embed_dim, s.decoder_num_heads, s.decoder_depth, s.skip_layers)

    assert sizes(b) == (512, 8, 10, 10, 2, 384, 6, 4, (3, 6, 9))
    assert sizes(l) == (640, 10, 12, 12, 2, 512, 8, 4, (3, 7, 11))
    assert sizes(h) == (768, 12, 15, 15, 2, 640, 8, 4, (4, 9, 14))
    assert all(s.fusion_num_heads == s.num_heads for s in (b, l, h))
    assert scale_names() == ["tiny", "small", "base", "large", "huge"]


def test_scale_validation_and_overrides():
    with pytest.raises(ValueError, match="unknown model scale"):
        get_scale("gigantic")
    with pytest.raises(ValueError, match="unknown scale field"):
        get_scale("tiny", widht=3)
    with pytest.raises(ValueError, match="skip_layers"):
        get_scale("tiny", skip_layers=(0,))
    with pytest.raises(ValueError, match="divisible"):
        get_scale("tiny", num_heads=5)
    deeper = get_scale("base", depth=4)
    assert (deeper.video_depth, deeper.audio_depth) == (4, 4)
    assert (deeper.skip_layers, deeper.decoder_depth) == ((1, 2, 3), 4)
    with pytest.raises(ValueError, match="region"):
        create_model("tiny", video_region=(3, 5, 10))


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_shapes_small_scales_run(name):
    torch.manual_seed(0)
    scale = SCALES[name]
    model = create_model(name, num_classes=5).eval()
    video, audio = torch.randn(1, 3, 16, 160, 160), torch.randn(1, 1, 256, 128)
    with torch.no_grad():
        assert model(video, audio).shape == (1, 5)
        assert model.video_encoder(video).shape == (1, 8, scale.video_depth, scale.embed_dim)
    pre = create_model(name, pretrain=True).eval()
    masks = window_masks(2)
    with torch.no_grad():
        out = pre(video.expand(2, -1, -1, -1, -1), audio.expand(2, -1, -1, -1), *masks)
    levels = len(scale.skip_layers)
    assert out.video_recon.shape == (2, 400, 1536) and out.audio_recon.shape == (2, 64, 256)
    assert out.video_decoded.shape == (2, 400) and out.video_loss_mask.dtype == torch.bool
    assert len(out.logits_per_video) == levels and out.logits_per_video[0].shape == (2, 2)
    assert out.video_embeddings[0].shape == (2, scale.embed_dim)
    torch.testing.assert_close(out.logits_per_audio[-1], out.logits_per_video[-1].t())


@pytest.mark.parametrize("name", BIG)
def test_shapes_big_scales_on_meta(meta_models, name):
    scale = SCALES[name]
    model, pre = meta_models[name]
    # Forward outside the device context: meta kernels are slow enough without its dispatch.
    video = torch.empty(2, 3, 16, 160, 160, device="meta")
    audio = torch.empty(2, 1, 256, 128, device="meta")
    assert model(video, audio).shape == (2, 11)
    # Indices are built from real masks on the CPU, then moved to the model's device.
    index = pre.index_masks(*window_masks(2)).to("meta")
    out = pre.forward_indexed(video, audio, index)
    assert out.video_recon.shape == (2, 400, 1536) and out.audio_recon.shape == (2, 64, 256)
    assert len(out.logits_per_video) == len(scale.skip_layers)
    assert out.video_embeddings[-1].shape == (2, scale.embed_dim)


def test_timm_registration():
    model = timm.create_model("avfmae_tiny", num_classes=3)
    assert isinstance(model, AVFClassifier) and model.head.out_features == 3
    with torch.device("meta"):
        base = timm.create_model("avfmae_base", num_classes=11)
        assert _count(base) == FINETUNE_PARAMS["base"]
    assert isinstance(timm.create_model("avfmae_pretrain_tiny"), AVFPretrain)
    with pytest.raises(ValueError, match="no hub weights"):
        timm.create_model("avfmae_tiny", pretrained=True)
    assert "avfmae_huge" in timm.list_models("avfmae*")


@pytest.mark.parametrize("first", ["avfmae", "timm"])
def test_importing_avfmae_registers_the_timm_names_without_importing_torch(first):
    import subprocess
    import sys

    second = "timm" if first == "avfmae" else "avfmae"
    code = (f"import sys; import {first}; "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules)); "
            f"import {second}, timm; print(len(timm.list_models('avfmae*')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == ("[]" if first == "avfmae" else "['timm', 'torch']")
    assert int(out[1]) == 2 * len(SCALES)


def test_pretrained_cfg_states_the_data_pipelines_geometry_and_normalisation():
    import numpy as np
    from timm.data import resolve_model_data_config

    from avfmae.data.audio_features import normalize_fbank
    from avfmae.data.video_transforms import to_normalized

    registered = timm.models.get_pretrained_cfg("avfmae_base")
    assert registered.input_size == (3, 160, 160) and registered.num_classes == 11
    assert registered.classifier == "head" and "16 frames" in registered.notes[0]
    model = timm.create_model("avfmae_tiny", num_classes=3)
    cfg = model.pretrained_cfg
    assert cfg["num_frames"] == 16 and cfg["num_classes"] == 3
    assert cfg["audio_input_size"] == (1, 256, 128)
    data = resolve_model_data_config(model)
    assert data["input_size"] == (3, 160, 160) and data["crop_pct"] == 1.0
    # the stated normalisation is the one the clips get
    frame = np.full((1, 4, 4, 3), (10, 128, 250), np.uint8)
    mean, std = torch.tensor(data["mean"]), torch.tensor(data["std"])
    expected = (torch.tensor([10, 128, 250]) / 255 - mean) / std
    torch.testing.assert_close(to_normalized(frame)[:, 0, 0, 0], expected.float())
    fbank = torch.linspace(-12, 3, 8)
    torch.testing.assert_close(normalize_fbank(fbank),
                               (fbank - cfg["audio_mean"]) / cfg["audio_std"])
    # the cfg follows the geometry built, not the registered scale's
    with torch.device("meta"):
        small = timm.create_model("avfmae_pretrain_tiny", image_size=80, video_region=(2, 5, 5),
                                  audio_size=(128, 128))
    assert small.pretrained_cfg["input_size"] == (3, 80, 80)
    assert small.pretrained_cfg["audio_input_size"] == (1, 128, 128)
    assert small.pretrained_cfg["num_classes"] == 0
