"""Every task family through the real `dvc repro` in one run, on the embedded synthetic variants:
CEA with a pooled s1 (``synthetic`` + ``synthetic4``, two label sets), DEA with a pooled s1 of two
datasets with different target dimensions (``synthetic_va`` regression of valence and arousal,
``synthetic_av5`` arousal and valence on 5 levels, each classified, like AVCAffe) and MER
(``synthetic_me``,
leave-one-subject-out), each reaching ``reports/report.md`` with its family's tables and
figures."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from pipeline_repo import BIN, MICRO_PARAMS, copy_checkout, git, run, set_params

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# s1 then s3: the pooled s1 is what differs by family; s2 runs in the other end-to-end tests
FAMILIES = {**MICRO_PARAMS,
            "data.datasets": ["synthetic", "synthetic_va", "synthetic_av5", "synthetic_me"],
            "data.s1_pool": ["synthetic4"], "finetune.stages": ["s1", "s3"]}


def _section(report: str, ds: str) -> str:
    start = report.index(f"## {ds}\n")
    end = report.find("\n## ", start + 1)
    return report[start:end if end > 0 else None]


def _digest(path: str, repo: Path) -> str:
    return hashlib.sha256((repo / path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def families_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = copy_checkout(tmp_path_factory.mktemp("families") / "repo")
    set_params(repo, FAMILIES)
    git(repo, "commit", "-qam", "every task family")
    run([str(BIN / "dvc"), "repro"], cwd=repo)
    return repo


def test_each_family_reaches_the_report(families_repo: Path):
    repo = families_repo
    report = (repo / "reports/report.md").read_text()
    summary = json.loads((repo / "metrics/summary.json").read_text())

    cea = _section(report, "synthetic")
    assert "synthetic_confusion.png" in cea and "s1 | s3" in cea
    s1_log = (repo / "logs/finetune/s1_synthetic_1.log").read_text()
    assert "training clips (synthetic, synthetic4)" in s1_log
    assert not (repo / "metrics/synthetic4").exists()  # pooled in s1 only, never evaluated

    dea = _section(report, "synthetic_va")
    assert "Test per dimension" in dea and "| valence |" in dea and "| arousal |" in dea
    assert "synthetic_va_scatter.png" in dea and "confusion" not in dea
    assert (repo / "plots/report/synthetic_va_scatter.png").stat().st_size > 1000
    assert not (repo / "plots/report/synthetic_va_confusion.png").exists()
    assert set(summary["synthetic_va"]["test_by_dimension"]) == {"valence", "arousal"}
    va_log = (repo / "logs/finetune/s1_synthetic_va_1.log").read_text()
    assert "training clips (synthetic_va, synthetic_av5)" in va_log
    assert json.loads((repo / "metrics/synthetic_va/fold1/s3.json").read_text())[
        "selection_metric"] == "ccc"

    levels = _section(report, "synthetic_av5")
    for dim in ("arousal", "valence"):  # one confusion matrix per levelled dimension
        assert f"synthetic_av5_confusion_{dim}.png" in levels
        assert (repo / f"plots/report/synthetic_av5_confusion_{dim}.png").stat().st_size > 1000
    assert "Test per dimension" in levels and "weighted_f1" in levels and "ccc" not in levels
    assert set(summary["synthetic_av5"]["test_by_dimension"]) == {"arousal", "valence"}
    test = json.loads((repo / "metrics/synthetic_av5/fold1/test.json").read_text())
    assert test["dimensions"] == ["arousal", "valence"]
    assert {"weighted_f1_arousal", "uar_valence", "weighted_f1"} <= set(test["test"])
    assert json.loads((repo / "metrics/synthetic_av5/fold1/s3.json").read_text())[
        "selection_metric"] == "weighted_f1"

    mer = _section(report, "synthetic_me")
    assert "(MER protocol)" in mer and "| pooled |" in mer
    assert set(summary["synthetic_me"]["test_pooled"]) == {"uf1", "uar", "war"}


def test_s1_never_trains_on_held_out_media_of_any_dataset(families_repo: Path):
    """What s1 trains on (the rows `training_rows` gives it) shares no media, by resolved path
    or by content, with the target fold's validation or test split."""
    from avfmae.config import load_params
    from avfmae.tasks import split_rows
    from avfmae.train.finetune import training_rows

    cwd = os.getcwd()
    os.chdir(families_repo)
    try:
        params = load_params(Path("params.yaml"))
        for target in params.data.datasets:
            rows = training_rows(params, target, 1, "s1")
            held = pd.concat([split_rows(params, target, 1, p) for p in ("val", "test")])
            used = {str(Path(p).resolve()) for p in rows["src_video"]}
            assert not used & {str(Path(p).resolve()) for p in held["src_video"]}, target
            assert not ({_digest(p, families_repo) for p in rows["src_video"]}
                        & {_digest(p, families_repo) for p in held["src_video"]}), target
    finally:
        os.chdir(cwd)
