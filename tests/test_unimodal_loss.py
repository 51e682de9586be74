"""The unimodal loss terms of fine-tuning: training-only heads on each encoder's own pooled
features give the face encoder a loss of its own in the audio-visual model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fixed_heads import FixedHeads

from avfmae.config import load_params
from avfmae.models import create_model
from avfmae.models.loading import load_matching
from avfmae.tasks import Task
from avfmae.train.finetune import Objective

EMOTIONS = Task("emo", "CEA", ("a", "b", "c"))
HEADS = {"emo": 3, "other": 2}


def _inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 16, 160, 160, generator=g), torch.randn(2, 1, 256, 128, generator=g)


def test_each_unimodal_head_reads_its_own_encoder_alone():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=HEADS, unimodal_heads=True,
                         head_init_scale=1.0).eval()
    video, audio = _inputs(0)
    other_video, other_audio = _inputs(1)
    with torch.no_grad():
        out = model(video, audio, unimodal=True)
        plain = model(video, audio)
        audio_changed = model(video, other_audio, unimodal=True)
        video_changed = model(other_video, audio, unimodal=True)
    for name, k in HEADS.items():
        assert out[name].shape == (3, 2, k)
        assert torch.equal(out[name][0], plain[name])
        assert torch.equal(audio_changed[name][1], out[name][1])  # video head: same video
        assert torch.equal(video_changed[name][2], out[name][2])  # audio head: same audio
        assert not torch.allclose(audio_changed[name][0], out[name][0])  # the joint head fuses
        assert not torch.allclose(video_changed[name][1], out[name][1])


def test_predictions_do_not_need_them():
    """A model built without them loads a trained one's weights and predicts the same."""
    torch.manual_seed(0)
    trained = create_model("tiny", num_classes=HEADS, unimodal_heads=True).eval()
    plain = create_model("tiny", num_classes=HEADS).eval()
    report = load_matching(plain, trained.state_dict(), heads=True)
    assert not report.missing and all(k.startswith("unimodal_heads.") for k in report.unused)
    fresh_heads = load_matching(trained, trained.state_dict(), heads=False)
    assert not any(k.startswith("unimodal_heads.") for k in fresh_heads.loaded)
    video, audio = _inputs(0)
    with torch.no_grad():
        assert torch.equal(plain(video, audio)["emo"], trained(video, audio)["emo"])


def test_a_one_modality_model_has_none():
    with pytest.raises(ValueError, match="'video'-only model's head already reads one"):
        create_model("tiny", num_classes=5, modality="video", unimodal_heads=True)
    with pytest.raises(ValueError, match="built without unimodal heads"):
        create_model("tiny", num_classes=5)(*_inputs(0), unimodal=True)


def _loss(params, logits: torch.Tensor) -> tuple[float, bool]:
    n = logits.shape[-2]
    batch = {"dataset": ["emo"] * n, "video": torch.zeros(n, 1), "audio": torch.zeros(n, 1),
             "label": torch.arange(n) % 3, "index": torch.arange(n),
             "target": torch.zeros(n, 0)}
    model = FixedHeads({"emo": logits})
    loss = Objective(params, params.finetune.s1, {"emo": EMOTIONS}, rank=0)(
        model, batch, 0, torch.device("cpu"))
    return loss.item(), model.asked_unimodal


def test_each_unimodal_head_adds_its_cross_entropy_times_the_weight(write_params):
    params = load_params(write_params({"finetune.s1.unimodal_loss": 0.5,
                                       "finetune.s1.label_smoothing": 0.0}))
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 3)
    loss, asked = _loss(params, logits)
    labels = torch.arange(6) % 3
    joint, video, audio = (F.cross_entropy(x, labels).item() for x in logits)
    assert asked
    assert loss == pytest.approx(joint + 0.5 * (video + audio), rel=1e-5)


def test_on_by_default_off_at_0_and_in_a_one_modality_model(write_params):
    torch.manual_seed(0)
    assert _loss(load_params(write_params()), torch.randn(3, 6, 3))[1]
    logits = torch.randn(6, 3)
    for change in ({"finetune.s1.unimodal_loss": 0.0},
                   {"finetune.s1.unimodal_loss": 1.0, "finetune.modality": "video"}):
        loss, asked = _loss(load_params(write_params(change)), logits)
        assert not asked
        assert loss == pytest.approx(
            F.cross_entropy(logits, torch.arange(6) % 3, label_smoothing=0.1).item(), rel=1e-5)
