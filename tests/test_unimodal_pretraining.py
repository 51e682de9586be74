"""Video-only and audio-only pretraining through the real pretrain stage on the micro synthetic
store: what it trains and logs, exact resume from a mid-run checkpoint, and what fine-tuning
loads from its encoder (asserted by name)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from param_files import edit_params
from safetensors import safe_open

from avfmae.config import ConfigError, load_params
from avfmae.curves import read_curves
from avfmae.models import load_pretrained_encoder
from avfmae.models.build import build_classifier
from avfmae.pipeline import PRETRAIN_ENCODER, snakemake_params
from avfmae.tasks import task_of
from avfmae.train.checkpoint import load_weights
from avfmae.train.finetune import initialise
from avfmae.train import pretrain as pretrain_module
from avfmae.train.pretrain import pretrain


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _classifier(modality: str):
    edit_params(Path("params.yaml"), {"finetune.modality": modality})
    params = load_params()
    return params, build_classifier(params, {"synthetic": task_of(params, "synthetic").outputs})


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_one_modality_pretrains_resumes_exactly_and_loads_into_finetuning(
        micro_work: Path, modality: str, caplog, monkeypatch):
    other = "audio" if modality == "video" else "video"
    # a finished run deletes its checkpoints; keep them to resume from the middle one
    monkeypatch.setattr(pretrain_module, "finish_run", lambda run_dir: None)
    edit_params(Path("params.yaml"), {"pretrain.modality": modality, "pretrain.epochs": 3,
                                      "pretrain.checkpoint_every_steps": 1})
    params = load_params()
    assert snakemake_params("pretrain", params)["pretrain__modality"] == modality

    pretrain(params, resume="never")
    reference = load_weights(PRETRAIN_ENCODER)
    assert reference and all(k.startswith(f"{modality}_encoder.") for k in reference)
    with safe_open(PRETRAIN_ENCODER, "pt") as f:
        assert f.metadata()["modality"] == modality
    losses = read_curves(Path("live/pretrain"))
    assert f"loss_{modality}" in losses and not {f"loss_{other}", "loss_hcmcl"} & set(losses)
    # the second masked view is a video-encoder term (docs/model.md §5.6)
    assert ("loss_view" in losses) == (modality == "video")
    view = params.pretrain.view_contrastive_weight * losses.get("loss_view", 0.0)
    assert (losses["loss"] - losses[f"loss_{modality}"] - view).abs().max() < 1e-5
    assert sorted(p.name for p in Path("plots/pretrain").glob("recon_*.png")) == \
        [f"recon_{modality}.png"]

    # resume from the checkpoint after 2 of 3 epochs: the same final weights, bit for bit
    checkpoints = sorted(Path("runs/pretrain/checkpoints").glob("checkpoint-*.pt"))
    assert [p.name for p in checkpoints] == ["checkpoint-000000002.pt",
                                                   "checkpoint-000000003.pt"]
    Path(PRETRAIN_ENCODER).unlink()
    shutil.copy(checkpoints[0], "mid.pt")
    pretrain(params, resume="mid.pt")
    resumed = load_weights(PRETRAIN_ENCODER)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert read_curves(Path("live/pretrain")).equals(losses)

    # fine-tuning the audio-visual model: this encoder loads, the other one and fusion start
    # from their fresh initialisation, and the log line says so
    params, model = _classifier("av")
    report = load_pretrained_encoder(model, reference)
    own = model.state_dict()
    assert report.loaded == sorted(k for k in own if k.startswith(f"{modality}_encoder."))
    assert set(report.missing) == set(own) - set(report.loaded)
    assert {k.split(".")[0] for k in report.missing} == {
        f"{other}_encoder", "fusion", "video_layer_weights", "audio_layer_weights", "fc_norm",
        "head_standardizer", "heads"}
    caplog.set_level(logging.INFO, logger="avfmae.train.finetune")
    initialise(model, params, "synthetic", 1, "s1")
    line = next(r.getMessage() for r in caplog.records if "starts from" in r.getMessage())
    loaded, random = line.split("; random init: ")
    assert f"loaded {modality}_encoder ({len(report.loaded)} tensors)" in loaded
    assert f"{other}_encoder" in random and "fusion" in random

    # fine-tuning that modality alone: its whole encoder loads, only the top is fresh
    _, model = _classifier(modality)
    report = load_pretrained_encoder(model, reference)
    assert report.loaded == sorted(reference) and not report.unused
    assert {k.split(".")[0] for k in report.missing} == {
        f"{modality}_layer_weights", "fc_norm", "head_standardizer", "heads"}

    # the other modality alone has nothing to start from: one clear line, before any compute
    edit_params(Path("params.yaml"), {"finetune.modality": other})
    with pytest.raises(ConfigError, match=f"finetune.modality: {other} cannot start from"):
        load_params()
