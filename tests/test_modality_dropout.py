"""Modality dropout in fine-tuning: a share of the audio-visual model's training clips loses its
audio or its video (set to the normalised mean, 0), never both, reproducibly per seed."""

from __future__ import annotations

import pytest
import torch

from avfmae.config import load_params
from avfmae.errors import ConfigError
from avfmae.tasks import Task
from avfmae.train.finetune import Objective

EMOTIONS = Task("emo", "CEA", ("a", "b", "c"))
N = 400


class Recorder(torch.nn.Module):
    """Keeps the inputs the objective passes to the model; returns fixed logits."""

    def forward(self, video, audio, head=None, unimodal=False):
        self.video, self.audio = video, audio
        return {"emo": torch.zeros(3, len(video), 3) if unimodal else torch.zeros(len(video), 3)}


def _inputs(params, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    batch = {"dataset": ["emo"] * N, "video": torch.ones(N, 3, 2, 4, 4),
             "audio": torch.ones(N, 1, 8, 4), "label": torch.arange(N) % 3,
             "index": torch.arange(N), "target": torch.zeros(N, 0)}
    model = Recorder()
    Objective(params, params.finetune.s1, {"emo": EMOTIONS}, rank=0)(
        model, batch, epoch, torch.device("cpu"))
    return (model.video.flatten(1).abs().sum(1) == 0), (model.audio.flatten(1).abs().sum(1) == 0)


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_a_share_p_of_clips_loses_one_modality_with_even_odds(write_params, p: float):
    no_video, no_audio = _inputs(load_params(write_params({"finetune.s1.modality_dropout": p})))
    assert not (no_video & no_audio).any()
    for dropped in (no_video, no_audio):
        assert dropped.float().mean().item() == pytest.approx(p / 2, abs=0.06)


def test_off_by_default(write_params):
    no_video, no_audio = _inputs(load_params(write_params()))
    assert not no_video.any() and not no_audio.any()


def test_a_one_modality_model_refuses_it(write_params):
    path = write_params({"finetune.s3.modality_dropout": 0.5, "finetune.modality": "video"})
    with pytest.raises(ConfigError, match=r"finetune.s3.modality_dropout: a video-only model"):
        load_params(path)


def test_the_dropped_clips_follow_the_seed_and_change_with_the_epoch(write_params):
    params = load_params(write_params({"finetune.s1.modality_dropout": 0.5}))
    first = _inputs(params, epoch=0)
    assert all(torch.equal(a, b) for a, b in zip(first, _inputs(params, epoch=0)))
    assert not torch.equal(first[1], _inputs(params, epoch=1)[1])
    reseeded = load_params(write_params({"finetune.s1.modality_dropout": 0.5,
                                         "finetune.seed": 1}))
    assert not torch.equal(first[1], _inputs(reseeded, epoch=0)[1])
