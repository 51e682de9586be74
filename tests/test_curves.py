"""Live training curves: what dvclive writes reads back, a resume replays, bad places fail."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from avfmae.curves import curve_name, log_record, open_curves, read_curves
from avfmae.errors import UserError

RECORDS = [{"epoch": 0, "loss": 1.5, "lr": 0.01, "val_uar": 0.3},
           {"epoch": 1, "loss": 1.1, "lr": 0.005, "val_uar": 0.45}]


def test_names_follow_dvclive_groups():
    assert [curve_name(k) for k in ("loss", "loss_video", "val_uar", "lr")] == [
        "train/loss", "train/loss_video", "val/uar", "lr"]


def test_curves_read_back_and_a_replay_rewrites_them_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    live = open_curves(Path("live/s1"), RECORDS[:1])
    log_record(live, RECORDS[1])
    live.end()
    curves = read_curves(Path("live/s1"))
    assert list(curves["step"]) == [0, 1]
    assert list(curves["loss"]) == [1.5, 1.1] and list(curves["val_uar"]) == [0.3, 0.45]
    assert list(curves["lr"]) == [0.01, 0.005] and "epoch" not in curves
    assert (tmp_path / "live/s1/plots/metrics/train/loss.tsv").is_file()
    # a resumed run starts a fresh folder from the records its checkpoint restored
    open_curves(Path("live/s1"), RECORDS).end()
    assert read_curves(Path("live/s1")).equals(curves)
    assert read_curves(Path("live/none")).empty


def test_a_repository_without_commits_is_one_clear_error(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="commit the checkout once"):
        open_curves(Path("live/s1"), [])
