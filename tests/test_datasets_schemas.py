"""Manifest/splits validation: every violation is reported, all at once, by row."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avfmae.config import DataConfig, Params
from avfmae.data import index as index_mod
from avfmae.data import registry
from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.schemas import IndexValidationError, validate


def _manifest(tmp_path: Path, rows: list[dict]) -> pd.DataFrame:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    out = []
    for r in rows:
        out.append({"clip_id": r["id"], "dataset": r.get("dataset", "ravdess"),
                    "video": r.get("video", str(video)), "audio": r.get("audio", ""),
                    "subject": r.get("subject", "Actor_01"), "labeled": r.get("labeled", True),
                    "label": r.get("label", 0)})
    return pd.DataFrame(out).astype({"labeled": bool, "label": int})


def test_every_violation_is_listed_at_once(tmp_path):
    spec = registry.get("ravdess")
    m = _manifest(tmp_path, [
        {"id": "a", "subject": "S1"},
        {"id": "b", "subject": "S2"},
        {"id": "c", "subject": "S3"},
        {"id": "b", "subject": "S2"},                          # duplicate id
        {"id": "bad id/x", "subject": "S3"},                   # not filesystem-safe
        {"id": "e", "video": str(tmp_path / "missing.mp4")},   # file does not exist
        {"id": "f", "label": 8},                               # label out of range
        {"id": "g", "labeled": True, "label": -1},             # labeled without a label
        {"id": "h", "labeled": False, "label": 3},             # unlabeled with a label
        {"id": "i", "dataset": "cremad6"},                     # wrong dataset
        {"id": "j", "subject": "S9"},                          # labeled but never tested
    ])
    s = pd.DataFrame([
        ("a", 1, "train"), ("b", 1, "val"), ("c", 1, "test"),
        ("c", 1, "train"),                                     # twice in fold 1
        ("a", 2, "test"), ("c", 2, "test"),                    # c tested in two folds
        ("zzz", 2, "train"),                                   # not in the manifest
        ("b", 3, "dev"),                                       # unknown part; fold 3 of 2
        ("b", 2, "train"), ("e", 2, "train"), ("f", 2, "val"),
        ("g", 1, "train"),                                     # subject Actor_01 in ...
        ("f", 1, "test"),                                      # ... train and test of fold 1
    ], columns=["clip_id", "fold", "part"])
    with pytest.raises(IndexValidationError) as err:
        validate(spec, m, s, n_folds=2, num_classes=8,
                 report_path=tmp_path / "errors.csv")
    f = err.value.failures
    msg = str(err.value)
    checks = set(f["check"])
    for expected in ("unique clip_id", "filesystem-safe id", "file exists", "label in range",
                     "label matches labeled", "registry name", "labeled clip in a test part",
                     "unique (clip_id, fold)", "test parts disjoint across folds",
                     "labeled clip of the manifest", "fold in range", "part",
                     "subject in one part per fold"):
        assert expected in checks, (expected, checks)
        assert f"check '{expected}'" in msg
    # each offending row is named
    assert set(f.loc[f["check"] == "label matches labeled", "clip_id"]) == {"g", "h"}
    assert set(f.loc[f["check"] == "labeled clip in a test part", "clip_id"]) == \
        {"b", "e", "g", "h", "i", "j", "bad id/x"} - {"h"}
    assert set(f.loc[f["check"] == "test parts disjoint across folds", "row"]) == {2, 5}
    subj = f.loc[f["check"] == "subject in one part per fold"]
    assert {"g", "f"} <= set(subj["clip_id"])
    assert "row 5 clip e [video]" in msg
    assert pd.read_csv(tmp_path / "errors.csv").shape[0] == len(f)


def test_targets_must_match_labeled(tmp_path):
    spec = registry.get("werewolf_xl")
    m = _manifest(tmp_path, [{"id": f"c{i}", "subject": f"p{i}", "label": -1,
                              "dataset": "werewolf_xl"} for i in range(3)])
    m["t_arousal"], m["t_valence"], m["t_dominance"] = [0.1, np.nan, 0.3], 0.5, 0.5
    m.loc[2, "labeled"] = False
    s = pd.DataFrame([("c0", 1, "train"), ("c1", 1, "val"), ("c0", 2, "test"),
                      ("c1", 1, "test")], columns=["clip_id", "fold", "part"])
    with pytest.raises(IndexValidationError) as err:
        validate(spec, m, s, n_folds=2, num_classes=0, check_files=False)
    f = err.value.failures
    assert set(f.loc[f["check"] == "targets match labeled", "clip_id"]) == {"c1", "c2"}
    assert "fold has a test part" not in set(f["check"])
    assert "fold has a val part" in set(f["check"])  # fold 2 has no validation clips


def test_index_stage_fails_listing_all_offending_rows_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path("data/licensed/voxceleb2")
    root.mkdir(parents=True)
    Path("data/raw/voxceleb2").mkdir(parents=True)
    (root / "ok.mp4").write_bytes(b"x")

    def bad_parser(root: Path, spec) -> ParseResult:
        clips = [Clip("ok", video=root / "ok.mp4")]
        clips += [Clip(f"gone{i}", video=root / f"gone{i}.mp4") for i in range(3)]
        clips.append(Clip("sp ace", video=root / "ok.mp4"))
        return ParseResult(clips)

    monkeypatch.setattr(index_mod, "load_parser", lambda ref: bad_parser)
    p = dataclasses.replace(Params(), data=dataclasses.replace(
        DataConfig(), root="data", licensed_root="data/licensed"))
    with pytest.raises(IndexValidationError) as err:
        index_mod.index("voxceleb2", p)
    msg = str(err.value)
    assert "3 row(s)" in msg and all(f"clip gone{i}" in msg for i in range(3))
    assert "clip sp ace" in msg
    assert not Path("data/interim/voxceleb2").exists()
    assert Path("data/interim/.voxceleb2.errors.csv").is_file()
