"""`avfmae predict`: the evaluate stage's predictions for test-split clips given as plain
videos, other resolutions and frame rates, long videos as a timeline, recorded skips, and one
clear error for a checkpoint without a model card."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from param_files import edit_params
from safetensors.torch import load_file

import avfmae
from avfmae.config import Params, load_params
from avfmae.data.clips import ClipDataset
from avfmae.errors import UserError
from avfmae.eval.evaluate import evaluate
from avfmae.tasks import Task
from avfmae.eval.model_card import model_card, read_model_card
from avfmae.eval.predict import collect_videos, resolve_checkpoint, resolve_device, window_starts
from avfmae.train.checkpoint import export_weights
from avfmae.train.finetune import finetune

AVFMAE = [sys.executable, "-m", "avfmae"]


def cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([*AVFMAE, *args], capture_output=True, text=True, cwd=cwd)
    if check and res.returncode != 0:
        raise AssertionError(f"avfmae {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res


@pytest.mark.parametrize("num_windows", [1, 2, 3])
def test_windows_are_evaluations_until_a_video_is_long(num_windows: int):
    evaluation = ClipDataset(pd.DataFrame(columns=["clip_id", "video", "audio"]), "eval",
                             num_windows=num_windows)
    span = hop = evaluation.span  # predict's default hop
    longest = span + max(1, num_windows - 1) * hop  # evaluation's windows still touch
    for n in range(1, longest + 1):
        assert window_starts(n, span, num_windows, hop) == evaluation.window_starts(n, None), n
    for n in (longest + 1, 1000, 15000):
        starts = window_starts(n, span, num_windows, hop)
        assert starts[0] == 0 and starts[-1] == n - span
        assert max(np.diff(starts)) <= hop
        assert len(starts) == -(-(n - span) // hop) + 1 > num_windows


@pytest.mark.parametrize("task", [
    Task("synthetic", "CEA", ("neutral", "happy"), regression=False),
    Task("synthetic_va", "DEA", ("valence", "arousal"), regression=True),
    Task("synthetic_valence5", "DEA", ("1", "2", "3", "4", "5"), regression=False),
], ids=["categorical", "dimensional", "levelled"])
def test_every_task_kind_gets_a_model_card(task: Task, tmp_path: Path):
    params = Params()
    card = model_card(params, task, stage="s3", fold=1)
    assert card.regression == task.regression and card.names == list(task.names)
    assert card.geometry["num_windows"] == params.eval.num_windows


def test_inputs_checkpoints_and_devices(tmp_path: Path, monkeypatch):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.MOV", "notes.txt"):
        (tmp_path / "in" / name).write_bytes(b"x")
    found = collect_videos([tmp_path / "in", tmp_path / "in" / "a.mp4", tmp_path / "gone.mp4"])
    assert found == [tmp_path / "in" / "a.mp4", tmp_path / "in" / "sub" / "b.MOV",
                     tmp_path / "gone.mp4"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no video files here"):
        collect_videos([tmp_path / "empty"])

    fold = tmp_path / "fold1"
    for stage in ("s1", "s3"):
        (fold / stage).mkdir(parents=True)
        (fold / stage / "best.safetensors").write_bytes(b"x")
    assert resolve_checkpoint(fold) == fold / "s3" / "best.safetensors"
    assert resolve_checkpoint(fold / "s1") == fold / "s1" / "best.safetensors"
    with pytest.raises(UserError, match="no best.safetensors"):
        resolve_checkpoint(tmp_path / "in")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="use auto, cpu, cuda"):
        resolve_device("gpu0")


def test_checkpoint_without_model_card_is_one_clear_error(tmp_path: Path):
    """Also: predict needs no params.yaml (the folder has none)."""
    export_weights({"w": torch.zeros(2)}, tmp_path / "old.safetensors", metadata={"epoch": "3"})
    res = cli("predict", "clip.mp4", "--model", "old.safetensors", cwd=tmp_path, check=False)
    assert res.returncode == 2
    assert "carries no model card" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "predictions.csv").exists()


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.mark.slow
def test_predict_gives_the_evaluate_stages_predictions(micro_work: Path, tmp_path: Path):
    edit_params(Path("params.yaml"), {"finetune.stages": ["s3"], "finetune.init": "random"})
    params = load_params()
    finetune(params, "s3", "synthetic", 1)
    evaluate(params, "synthetic", 1)
    evaluated = np.load("predictions/synthetic/fold1.npz")
    names = json.loads(Path("metrics/synthetic/fold1/test.json").read_text())["labels"]

    # the test clips as a user has them: source videos in a folder of their own
    manifest = pd.read_csv("data/interim/synthetic/manifest.csv", dtype=str).set_index("clip_id")
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip in evaluated["clip_id"]:
        shutil.copy(manifest.loc[clip, "video"], videos / f"{clip}.mp4")
    first = videos / f"{evaluated['clip_id'][0]}.mp4"
    _ffmpeg("-i", str(first), "-vf", "scale=320:240", "-r", "30", "-c:a", "aac",
            str(videos / "other_geometry.mp4"))
    (tmp_path / "list.txt").write_text("".join(
        f"file '{videos / c}.mp4'\n" for c in evaluated["clip_id"][:4]))
    _ffmpeg("-f", "concat", "-safe", "0", "-i", str(tmp_path / "list.txt"), "-c", "copy",
            str(videos / "long.mp4"))
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)

    res = cli("predict", str(videos), "--model", "models/finetune/synthetic/fold1",
              "--out", str(tmp_path / "out" / "predictions.csv"), "--plot")
    assert "skipped (unreadable_video)" in res.stdout
    clips = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("video")
    probs = [f"prob_{n}" for n in names]

    # same predictions as the evaluate stage, clip by clip
    tested = clips.loc[[str(videos / f"{c}.mp4") for c in evaluated["clip_id"]]]
    assert (tested["status"] == "ok").all() and (tested["windows"] == 1).all()
    np.testing.assert_allclose(tested[probs].to_numpy(), evaluated["best_output"], atol=1e-5)
    assert list(tested["predicted"]) == [names[k] for k in evaluated["best_output"].argmax(1)]

    other = clips.loc[str(videos / "other_geometry.mp4")]
    assert other["status"] == "ok" and other["face_rate"] >= 0.5
    assert (other["src_width"], other["src_height"], other["src_fps"]) == (320, 240, 30)
    assert other[probs].sum() == pytest.approx(1.0, abs=1e-5)

    broken = clips.loc[str(videos / "broken.mp4")]
    assert broken["status"] == "skipped" and broken["reason"] == "unreadable_video"
    assert pd.isna(broken["predicted"])

    # a long video: windows over the whole of it, the clip the mean of its timeline
    timeline = pd.read_csv(tmp_path / "out" / "predictions.timeline.csv")
    long = timeline[timeline["video"] == str(videos / "long.mp4")]
    assert clips.loc[str(videos / "long.mp4"), "windows"] == len(long) >= 4
    assert long["start_s"].iloc[0] == 0 and long["end_s"].iloc[-1] == pytest.approx(8.0)
    assert (np.diff(long["start_s"]) <= 2.56 + 1e-9).all()
    np.testing.assert_allclose(long[probs].mean().to_numpy(),
                               clips.loc[str(videos / "long.mp4"), probs].to_numpy(dtype=float),
                               atol=1e-6)
    report = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [c["video"] for c in report["clips"]] == list(clips.index)
    assert report["model"]["names"] == names and report["protocol"]["num_windows"] == 1
    n_ok = int((clips["status"] == "ok").sum())
    assert len(list((tmp_path / "out" / "predictions.timeline").glob("*.png"))) == n_ok

    # from Python, one window per forward pass: the same outputs
    again = avfmae.predict(first, "models/finetune/synthetic/fold1/s3/best.safetensors",
                           device="cpu", batch_size=1, workers=1, progress=False)
    np.testing.assert_allclose(again.clips[probs].to_numpy(dtype=float),
                               tested[probs].to_numpy()[:1], atol=1e-5)

    # a dimensional (DEA) card: raw head outputs per dimension, averaged, no label
    best = Path("models/finetune/synthetic/fold1/s3/best.safetensors")
    card = read_model_card(best)
    dims = [f"d{k}" for k in range(len(names))]
    dea = dataclasses.replace(card, task={**card.task, "family": "DEA", "names": dims,
                                         "regression": True})
    export_weights(load_file(best), tmp_path / "dea.safetensors", metadata=dea.to_metadata())
    values = avfmae.predict([videos / "long.mp4"], tmp_path / "dea.safetensors", workers=1,
                            progress=False)
    assert "predicted" not in values.clips and "windows" in values.clips
    dim_cols = [f"value_{d}" for d in dims]
    np.testing.assert_allclose(values.timeline[dim_cols].mean().to_numpy(),
                               values.clips[dim_cols].to_numpy(dtype=float)[0], atol=1e-6)
    assert not np.allclose(values.timeline[dim_cols].sum(axis=1), 1.0)
