"""The linear probe of frozen encoders: the regression itself on features of known
separability, and the probe of a real (micro) pretraining on held-out speakers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from param_files import edit_params

from avfmae.config import load_params
from avfmae.errors import UserError
from avfmae.eval.metrics import uar
from avfmae.eval.probe import fit_probe, probe
from avfmae.pipeline import PROBE_OUTPUTS
from avfmae.scales import get_scale
from avfmae.train.pretrain import pretrain


def _blobs(n: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, 16)) * sep
    return centres[y] + rng.normal(size=(n, 16)), y


def test_the_probe_separates_what_is_separable_and_nothing_else():
    x, y = _blobs(300, 4.0, 0)
    assert uar(y[200:], fit_probe(x[:200], y[:200], 3, x[200:]), 3) > 0.95
    noise = np.random.default_rng(1).normal(size=(300, 16))
    assert uar(y[200:], fit_probe(noise[:200], y[:200], 3, noise[200:]), 3) < 0.55


def test_classes_are_balanced_when_fitting():
    """A rare class is still predicted: UAR, not accuracy, is what the probe reports."""
    x, y = _blobs(600, 1.5, 2)
    keep = (y != 2) | (np.arange(600) % 8 == 0)  # class 2 is 8× rarer in training
    train = np.flatnonzero(keep[:400])
    pred = fit_probe(x[train], y[train], 3, x[400:])
    assert (pred == 2).sum() > 0.5 * (y[400:] == 2).sum()


def test_probe_of_an_audio_only_pretraining(micro_work: Path):
    torch.set_num_threads(1)
    with pytest.raises(UserError, match="run pretraining first"):
        probe(load_params())
    edit_params(Path("params.yaml"), {"pretrain.modality": "audio"})
    params = load_params()
    pretrain(params, resume="never")
    report = probe(params)
    result = json.loads(Path(PROBE_OUTPUTS["metrics"]).read_text())
    assert result["dataset"] == "synthetic" and result["folds"] == [1]
    uars = result["uar"]
    assert set(uars) == {"label", "face_pattern", "voice_pattern"}
    for target in uars.values():
        assert target["video"]["pretrained"] is None  # nothing pretrained for video
        for values in (target["video"]["random"], target["audio"]["random"],
                       target["audio"]["pretrained"], target["video"]["input"],
                       target["audio"]["input"]):
            assert len(values) == 1 and 0.0 <= values[0] <= 1.0
    scale = get_scale(params.model.scale, **params.model.overrides)
    for target in result["uar_by_depth"].values():
        assert target["video"]["pretrained"] is None
        for modality, values in (("video", target["video"]["random"]),
                                 ("audio", target["audio"]["random"]),
                                 ("audio", target["audio"]["pretrained"])):
            # the patch embedding, then every block
            assert len(values) == 1 + getattr(scale, f"{modality}_depth")
            assert all(len(v) == 1 and 0.0 <= v[0] <= 1.0 for v in values)
    text = report.read_text()
    # the fbank itself tells the voice patterns apart: the input column reads real inputs
    assert uars["voice_pattern"]["audio"]["input"] == [1.0]
    assert re.search(r"\| face_pattern \| video \| [0-9.]+ ± [0-9.]+ \| not pretrained \|", text)
    assert "| voice_pattern | audio |" in text and "Made on:" in text
    assert re.search(r"\| face_pattern \| video \| 0 \| not pretrained \| [0-9.]+ ± ", text)
    assert re.search(r"\| voice_pattern \| audio \| 0 \| [0-9.]+ ± [0-9.]+ \| [0-9.]+ ± "
                     r"[0-9.]+ \| [+-][0-9.]+ \|", text)
