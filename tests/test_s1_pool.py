"""s1 pooling across datasets: media identity guards the target's held-out splits, and each
pooled regression head reads its own dataset's target columns."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from fixed_heads import FixedHeads

from avfmae.config import load_params
from avfmae.tasks import Task
from avfmae.train.finetune import Objective, target_columns, training_rows


def _store(root: Path, ds: str, clips: dict[str, tuple[str, str]]) -> None:
    """A clip store and splits of fold 1: clip id → (part, source media path)."""
    (root / "processed" / ds).mkdir(parents=True)
    (root / "interim" / ds).mkdir(parents=True)
    pd.DataFrame({"clip_id": list(clips), "src_video": [m for _, m in clips.values()],
                  "label": 0, "labeled": True}).to_csv(
        root / "processed" / ds / "manifest.csv", index=False)
    pd.DataFrame({"clip_id": list(clips), "fold": 1, "part": [p for p, _ in clips.values()]}) \
        .to_csv(root / "interim" / ds / "splits.csv", index=False)


@pytest.fixture
def shared_media(write_params, tmp_path: Path):
    """``synthetic`` (target) and ``synthetic4`` (pooled) whose media overlap: one pooled
    training clip is the target's test clip (same file), one a byte copy of its validation
    clip under another path."""
    media = tmp_path / "media"
    media.mkdir()
    for i in range(6):
        (media / f"m{i}.mp4").write_bytes(bytes([i]) * 4096)
    shutil.copy(media / "m1.mp4", media / "copy_of_m1.mp4")
    root = tmp_path / "data"
    _store(root, "synthetic", {"a_train": ("train", f"{media}/m0.mp4"),
                               "a_val": ("val", f"{media}/m1.mp4"),
                               "a_test": ("test", f"{media}/m2.mp4")})
    _store(root, "synthetic4", {"b_same_file": ("train", f"{media}/../media/m2.mp4"),
                                "b_copy": ("train", f"{media}/copy_of_m1.mp4"),
                                "b_own": ("train", f"{media}/m3.mp4"),
                                "b_val": ("val", f"{media}/m4.mp4"),
                                "b_test": ("test", f"{media}/m5.mp4")})
    return load_params(write_params({"data.root": str(root), "data.folds": [1],
                                     "data.datasets": ["synthetic"],
                                     "data.s1_pool": ["synthetic4"]})), root, media


def test_s1_leaves_out_pooled_clips_that_share_held_out_media(shared_media):
    params, _, _ = shared_media
    rows = training_rows(params, "synthetic", 1, "s1")
    assert sorted(zip(rows["dataset"], rows["clip_id"])) == [
        ("synthetic", "a_train"), ("synthetic4", "b_own")]
    # s2/s3 train on the target alone
    assert list(training_rows(params, "synthetic", 1, "s3")["clip_id"]) == ["a_train"]


def test_s1_refuses_a_target_whose_training_part_shows_held_out_media(shared_media):
    params, root, media = shared_media
    manifest = root / "processed/synthetic/manifest.csv"
    rows = pd.read_csv(manifest)
    rows.loc[rows["clip_id"] == "a_train", "src_video"] = f"{media}/m2.mp4"
    rows.to_csv(manifest, index=False)
    with pytest.raises(RuntimeError, match="1 held-out clip"):
        training_rows(params, "synthetic", 1, "s1")


def test_each_regression_head_is_trained_on_its_own_target_columns(write_params):
    """Werewolf-XL-like (arousal, valence, dominance) pooled with a valence/arousal set: a
    head that predicts exactly its dataset's targets has zero loss (a head given the other
    dataset's columns would not, and a 2-output head given 3 columns would not even run)."""
    params = load_params(write_params({"finetune.regression_loss": "mse",
                                       "finetune.s1.unimodal_loss": 0.0}))
    tasks = {"ww": Task("ww", "DEA", ("arousal", "valence", "dominance"), True),
             "va": Task("va", "DEA", ("valence", "arousal"), True)}
    assert target_columns(tasks) == ["t_arousal", "t_valence", "t_dominance"]
    # rows 0-1 from ww, rows 2-3 from va (dominance unknown there: filled with 0)
    target = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.0], [0.9, 1.0, 0.0]])
    right = {"ww": torch.cat([target[:2], torch.zeros(2, 3)]),
             "va": torch.cat([torch.zeros(2, 2), target[2:, [1, 0]]])}
    batch = {"dataset": ["ww", "ww", "va", "va"], "video": torch.zeros(4, 1),
             "audio": torch.zeros(4, 1), "label": torch.full((4,), -1),
             "index": torch.arange(4), "target": target}
    objective = Objective(params, params.finetune.s1, tasks, rank=0)
    assert objective(FixedHeads(right), batch, 0, torch.device("cpu")).item() == pytest.approx(0.0)
    swapped = {**right, "va": torch.cat([torch.zeros(2, 2), target[2:, :2]])}
    assert objective(FixedHeads(swapped), batch, 0, torch.device("cpu")).item() > 0.001
