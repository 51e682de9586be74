"""A DVC experiment round trip of the ablation set: `avfmae ablate queue` queues two micro
configurations with `-S` (one of them changes the stage graph), `dvc exp run --run-all` runs
them, `dvc exp show --json` sees them, and `avfmae claims` tables them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline_repo import BIN, git, run

pytestmark = pytest.mark.e2e


def test_ablation_experiments_round_trip(reproduced_copy: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    # queued on a finished run, as a user would: the experiments reuse its unchanged stages
    micro_repo = reproduced_copy
    monkeypatch.setenv("PYTHONPATH", str(micro_repo))  # the copy's code runs
    started = time.perf_counter()
    out = run([str(BIN / "avfmae"), "ablate", "queue", "--set", "av", "random", "--seeds", "0"],
              cwd=micro_repo).stdout
    assert "queued 2 DVC experiment(s): av-seed0, random-seed0" in out
    # `random` drops pretraining: its dvc.yaml was rendered for the queue and put back
    assert git(micro_repo, "status", "--porcelain", "--untracked-files=no") == ""
    queued = run([str(BIN / "dvc"), "queue", "status"], cwd=micro_repo).stdout
    assert "av-seed0" in queued and "random-seed0" in queued

    run([str(BIN / "dvc"), "exp", "run", "--run-all", "-j", "1"], cwd=micro_repo)
    ran_s = time.perf_counter() - started
    shown = json.loads(run([str(BIN / "dvc"), "exp", "show", "--json"], cwd=micro_repo).stdout)
    exps = {e["name"]: e for b in shown for e in b.get("experiments") or []}
    assert {"av-seed0", "random-seed0"} <= set(exps)
    for name, exp in exps.items():
        assert exp["executor"]["state"] == "success", (name, exp["executor"])
    random_metrics = exps["random-seed0"]["revs"][0]["data"]["metrics"]
    assert "metrics/pretrain.json" not in random_metrics  # its own graph ran
    assert "metrics/pretrain.json" in exps["av-seed0"]["revs"][0]["data"]["metrics"]

    run([str(BIN / "avfmae"), "claims"], cwd=micro_repo)
    claims = (micro_repo / "reports/claims.md").read_text()
    assert "| pretraining beats random initialisation |" in claims
    assert "of 1 | too few paired runs (1;" in claims
    assert "- `video-seed0`: missing" in claims
    summary = json.loads((micro_repo / "metrics/claims.json").read_text())
    assert {r["experiment"] for r in summary["runs"]} == {"av-seed0", "random-seed0"}
    assert summary["machines"][0]["runs"] == 2 and summary["machines"][0]["cpu"]
    print(f"queue + 2 micro experiments + dvc exp show: {ran_s:.0f} s")
