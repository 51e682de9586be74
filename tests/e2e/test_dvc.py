"""`dvc repro` from a clean checkout: full chain, no-op rerun, params-driven partial reruns,
push/pull through a local remote, and resume after the orchestrator is killed mid-training."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline_repo import BIN, git, run, set_params

pytestmark = pytest.mark.e2e

FINAL_ARTIFACTS = [
    "data/raw/synthetic/synthetic.json",
    "data/interim/synthetic/manifest.csv",
    "data/interim/synthetic/splits.csv",
    "data/processed/synthetic/manifest.csv",
    "models/pretrain/encoder.safetensors",
    "models/finetune/synthetic/fold1/s1/best.safetensors",
    "models/finetune/synthetic/fold1/s2/best.safetensors",
    "models/finetune/synthetic/fold1/s3/best.safetensors",
    "metrics/synthetic/fold1/test.json",
    "metrics/summary.json",
    "reports/report.md",
]


def stages_run(output: str) -> list[str]:
    """Base names of the stages `dvc repro` ran, in order (matrix suffixes dropped)."""
    return [name.split("@")[0] for name in re.findall(r"Running stage '([^']+)'", output)]


def repro(repo: Path) -> list[str]:
    return stages_run(run([str(BIN / "dvc"), "repro"], cwd=repo).stdout)


def test_repro_reruns_exactly_what_changed(micro_repo: Path):
    first = repro(micro_repo)
    assert first == ["download", "index", "preprocess", "pretrain", "finetune_s1",
                     "finetune_s2", "finetune_s3", "evaluate", "report"]
    for rel in FINAL_ARTIFACTS:
        assert (micro_repo / rel).is_file(), rel

    assert repro(micro_repo) == []

    set_params(micro_repo, {"finetune.s3.base_lr": 3.0e-4})
    # report reruns only if the new model changes the metrics it reads (a micro model that
    # predicts one class everywhere gives byte-identical metrics, so DVC rightly skips it)
    assert repro(micro_repo) in (["finetune_s3", "evaluate"],
                                 ["finetune_s3", "evaluate", "report"])

    set_params(micro_repo, {"preprocess.face_size": 128})
    after_preprocess = ["preprocess", "pretrain", "finetune_s1", "finetune_s2", "finetune_s3",
                        "evaluate"]
    assert repro(micro_repo) in (after_preprocess, [*after_preprocess, "report"])

    # a generator param is declared by the download stage alone; the rest follows its output
    set_params(micro_repo, {"data.synthetic.seed": 1})
    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=micro_repo).stdout)
    assert set(status) == {"download@synthetic"}
    # new media under the same clip ids leave the index byte-identical: preprocessing must still
    # see them (it reads the media), so it is out of date once the download has rerun
    run([str(BIN / "dvc"), "repro", "--single-item", "download@synthetic"], cwd=micro_repo)
    run([str(BIN / "dvc"), "repro", "--single-item", "index@synthetic"], cwd=micro_repo)
    status = json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=micro_repo).stdout)
    assert "preprocess@synthetic" in status
    assert "index@synthetic" not in status


def test_push_then_pull_into_a_fresh_clone(micro_repo: Path, tmp_path: Path):
    repro(micro_repo)
    remote = tmp_path / "remote"
    run([str(BIN / "dvc"), "remote", "add", "-d", "store", str(remote)], cwd=micro_repo)
    run([str(BIN / "dvc"), "push"], cwd=micro_repo)
    git(micro_repo, "add", "-A")
    git(micro_repo, "commit", "-qm", "results")

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(micro_repo), str(clone)], check=True)
    run([str(BIN / "dvc"), "pull"], cwd=clone)
    for rel in FINAL_ARTIFACTS:
        assert (clone / rel).read_bytes() == (micro_repo / rel).read_bytes(), rel
    status = run([str(BIN / "dvc"), "status"], cwd=clone).stdout
    assert "Data and pipelines are up to date" in status


def test_killed_repro_resumes_pretraining(micro_repo: Path):
    set_params(micro_repo, {"pretrain.epochs": 4, "pretrain.checkpoint_every_steps": 1})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "dvc"), "repro"], cwd=micro_repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ckpts = micro_repo / "runs/pretrain/checkpoints"
    deadline = time.monotonic() + 600
    while not any(ckpts.glob("checkpoint-*.pt")) and time.monotonic() < deadline:
        assert proc.poll() is None, "dvc repro ended before pretraining checkpointed"
        time.sleep(0.5)
    assert any(ckpts.glob("checkpoint-*.pt")), "no pretraining checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    out = run([str(BIN / "dvc"), "repro"], cwd=micro_repo).stdout
    assert "pretrain" in stages_run(out)
    log = (micro_repo / "logs/pretrain/pretrain.log").read_text()
    assert re.search(r"resumed from \S*checkpoint-\d+\.pt \(step \d+", log), log[-2000:]
    assert (micro_repo / "reports/report.md").is_file()
