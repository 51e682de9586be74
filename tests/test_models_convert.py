"""Published checkpoints → our modules: every published name maps onto one of our tensors with the
right shape at every scale, file → file conversion, loading pretrained encoders, layer ids."""

from __future__ import annotations

import argparse
import json
import re

from reference_data import load_reference, reference_path

import pytest
import torch

from avfmae.models import (
    convert_checkpoint,
    convert_state_dict,
    create_model,
    load_checkpoint,
    load_pretrained_encoder,
)
from avfmae.models.convert import _map_name


MANIFESTS = [reference_path(f"manifest_{kind}_{scale}.json")
             for kind in ("finetune", "pretrain") for scale in ("base", "large", "huge")]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: these models are small, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta_state_dict(manifest: dict) -> dict[str, torch.Tensor]:
    dtypes = {k: getattr(torch, v["dtype"]) for k, v in manifest["buffers"].items()}
    return {
        name: torch.empty(shape, dtype=dtypes.get(name, torch.float32), device="meta")
        for name, shape in manifest["state_dict"].items()
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_manifest_maps_exactly(path):
    manifest = json.loads(path.read_text())
    sd = _meta_state_dict(manifest)
    # Both target models for base; the reference-compatible one elsewhere (each builds a model).
    for reference_compatible in (True, False) if "base" in path.stem else (True,):
        converted, report = convert_state_dict(sd, reference_compatible=reference_compatible)
        # Both directions: no published name left over, no tensor of ours missing, shapes equal.
        assert report.ok, str(report)
        assert report.scale == manifest["scale"] and report.kind == manifest["kind"]
    stats = ("running_mean", "running_var", "num_batches_tracked")
    params = sum(v.numel() for k, v in converted.items() if not k.endswith(stats))
    assert params == manifest["total_params"]
    assert "OK" in str(report)


def test_unknown_names_are_reported():
    manifest = json.loads(reference_path("manifest_finetune_base.json").read_text())
    sd = _meta_state_dict(manifest)
    sd["encoder.blocks.0.extra.weight"] = torch.empty(3, device="meta")
    del sd["head.bias"]
    _, report = convert_state_dict({"module": sd})
    assert not report.ok
    assert report.unmatched_source == ["encoder.blocks.0.extra.weight"]
    assert report.missing_target == ["head.bias"]
    assert "no counterpart" in str(report) and "missing" in str(report)


def _published_vector() -> dict:
    return load_reference("vector_finetune_small.pt")


SMALL_FT = dict(embed_dim=64, num_heads=4, depth=2, fusion_num_heads=4, drop_path_rate=0.0)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_convert_checkpoint_file_to_file(tmp_path, suffix):
    vector = _published_vector()
    src = tmp_path / "checkpoint-99.pth"
    # A published training checkpoint: model plus optimizer state, epoch and argparse args.
    args = argparse.Namespace(lr=1e-3)
    torch.save({"model": vector["state_dict"], "epoch": 99, "args": args}, src)
    model = create_model("tiny", num_classes=7, reference_compatible=True, **SMALL_FT).eval()
    dst = tmp_path / f"converted{suffix}"
    report = convert_checkpoint(src, dst, scale=model.scale)
    assert report.ok and report.num_classes == 7 and dst.exists()
    model.load_state_dict(load_checkpoint(dst), strict=True)
    video, audio = vector["inputs"]["video"].float(), vector["inputs"]["audio"].float()
    with torch.no_grad():
        logits = model(video, audio)
    torch.testing.assert_close(logits, vector["outputs"]["logits"], rtol=1e-5, atol=1e-5)
    assert convert_checkpoint(src, tmp_path / "inferred.pt").scale == "tiny"  # same sizes
    pretrain = load_reference("vector_pretrain_small.pt")["state_dict"]
    torch.save(pretrain, src)
    with pytest.raises(ValueError, match="match no registered scale"):
        convert_checkpoint(src, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_convert_to_default_model_drops_batchnorm_statistics():
    sd, report = convert_state_dict(_published_vector()["state_dict"],
                                    scale=create_model("tiny", **SMALL_FT).scale,
                                    reference_compatible=False)
    assert report.ok and any("BatchNorm" in n for n in report.notes)
    assert not any("running" in k for k in sd)
    model = create_model("tiny", num_classes=7, **SMALL_FT)
    model.load_state_dict(sd, strict=True)


def test_pretrained_encoder_round_trip():
    torch.manual_seed(0)
    pretrainer = create_model("tiny", pretrain=True)
    classifier = create_model("tiny", num_classes={"a": 3, "b": 5})
    head_before = classifier.heads["a"].weight.clone()
    report = load_pretrained_encoder(classifier, {"model": pretrainer.state_dict()})
    source = pretrainer.state_dict()
    for name, value in classifier.state_dict().items():
        if name.startswith(("video_encoder.", "audio_encoder.", "fusion.")):
            assert torch.equal(value, source[name]), name
    assert torch.equal(classifier.heads["a"].weight, head_before)
    fresh = {re.sub(r"\.(weight|bias)$", "", k) for k in report.missing}
    assert fresh == {"video_layer_weights", "audio_layer_weights", "fc_norm", "heads.a", "heads.b"}
    assert all(k.startswith(("video_decoder.", "audio_decoder.")) for k in report.unused)
    assert not report.shape_mismatches and "loaded" in str(report)

    # Classifier → classifier (next fine-tuning stage) keeps fc_norm and layer weights too.
    again = create_model("tiny", num_classes=2)
    report = load_pretrained_encoder(again, classifier.state_dict())
    assert set(report.missing) == {"head.weight", "head.bias"}
    # A video-only model takes the video encoder; its fc_norm is C wide, not 2C.
    video_only = create_model("tiny", num_classes=2, modality="video")
    report = load_pretrained_encoder(video_only, classifier.state_dict())
    assert set(report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert len(report.shape_mismatches) == 2
    assert any(k.startswith("audio_encoder.") for k in report.unused)

    with pytest.raises(ValueError, match="no encoder tensor"):
        load_pretrained_encoder(classifier, {"head.weight": torch.zeros(3, 128)})


def test_published_checkpoint_into_classifier():
    vector = _published_vector()
    classifier = create_model("tiny", num_classes=7, **SMALL_FT)
    report = load_pretrained_encoder(classifier, vector["state_dict"])
    assert not report.shape_mismatches
    assert {k.split(".")[0] for k in report.missing} == {"head"}


def test_layer_ids_follow_published_rule():
    """docs/model.md §6.3 on published names: 0 patch_embed; block i → i+1; fusion unit k →
    max(d)+k+1; everything else the top."""
    manifest = json.loads(reference_path("manifest_finetune_base.json").read_text())
    with torch.device("meta"):
        model = create_model("base")
    assert model.num_layers == 12
    params = dict(model.named_parameters())
    checked = 0
    for name in manifest["state_dict"]:
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        if "patch_embed" in name:
            expected = 0
        elif m := re.match(r"encoder(?:_audio)?\.blocks\.(\d+)\.", name):
            expected = int(m.group(1)) + 1
        elif "fusion" in name and (m := re.search(r"blocks\.(\d+)\.", name)):
            expected = 10 + int(m.group(1)) + 1
        else:
            expected = 12 + 1
        ours = _map_name(name)[0]
        if ours.endswith("qkv.weight"):
            ours = ours.replace("qkv.weight", "q.weight")
        assert ours in params, ours
        assert model.layer_id(ours) == expected, (name, ours)
        checked += 1
    assert checked > 1000
    assert {"video_encoder.region_tokens", "audio_layer_weights"} <= model.no_weight_decay()
