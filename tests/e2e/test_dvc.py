"""`dvc repro` from a clean checkout: full chain, no-op rerun, params-driven partial reruns,
push/pull through a local remote, and resume after the orchestrator is killed mid-training."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from param_files import edit_params
from pipeline_repo import BIN, Reproduced, git, repro, run, set_params, stages_run

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


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], cwd=repo, check=check)


def stale_stages(repo: Path) -> set[str]:
    return set(json.loads(dvc(repo, "status", "--json").stdout))


def outputs_digest(repo: Path) -> dict[str, str]:
    """Every file under the cached outputs, by path → SHA-256."""
    files = [p for top in ("data/raw", "data/interim", "data/processed", "models", "predictions",
                           "reports") for p in sorted((repo / top).rglob("*")) if p.is_file()]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_repro_reruns_exactly_what_changed(reproduced: Reproduced, reproduced_copy: Path,
                                          monkeypatch: pytest.MonkeyPatch):
    micro_repo = reproduced_copy
    monkeypatch.setenv("PYTHONPATH", str(micro_repo))  # the copy's code runs, so edits to it count
    assert reproduced.stages == ["check", "download", "index", "preprocess", "pretrain",
                                 "finetune_s1", "finetune_s2", "finetune_s3", "evaluate", "report"]
    for rel in FINAL_ARTIFACTS:
        assert (micro_repo / rel).is_file(), rel
    started = time.perf_counter()
    assert repro(micro_repo) == []
    noop_s = time.perf_counter() - started
    print(f"no-op dvc repro: {noop_s:.2f} s")
    _check_trustworthy_outputs(micro_repo)
    _check_code_edits(micro_repo)

    set_params(micro_repo, {"finetune.s3.base_lr": 3.0e-4})
    # report reruns only if the new model changes the metrics it reads (a micro model that
    # predicts one class everywhere gives byte-identical metrics, so DVC rightly skips it)
    assert repro(micro_repo) in (["check", "finetune_s3", "evaluate"],
                                 ["check", "finetune_s3", "evaluate", "report"])

    # fine-tuning selects its best epoch with the evaluation protocol
    set_params(micro_repo, {"eval.num_windows": 2})
    assert {s.split("@")[0] for s in stale_stages(micro_repo)} == {
        "check", "finetune_s1", "finetune_s2", "finetune_s3", "evaluate"}
    set_params(micro_repo, {"eval.num_windows": 1})

    set_params(micro_repo, {"preprocess.face_size": 128})
    after_preprocess = ["check", "preprocess", "pretrain", "finetune_s1", "finetune_s2",
                        "finetune_s3", "evaluate"]
    assert repro(micro_repo) in (after_preprocess, [*after_preprocess, "report"])

    # a generator param is declared by the download stage alone; the rest follows its output
    set_params(micro_repo, {"data.synthetic.seed": 1})
    assert stale_stages(micro_repo) == {"check", "download@synthetic"}
    # new media under the same clip ids leave the index byte-identical: preprocessing must still
    # see them (it reads the media), so it is out of date once the download has rerun
    dvc(micro_repo, "repro", "--single-item", "download@synthetic")
    dvc(micro_repo, "repro", "--single-item", "index@synthetic")
    status = stale_stages(micro_repo)
    assert "preprocess@synthetic" in status
    assert "index@synthetic" not in status


def _check_trustworthy_outputs(repo: Path) -> None:
    """After a full run: no leftover training state, byte-identical retraining, bad or stale
    params refused before any output is deleted, in-place corruption cannot reach the cache."""
    assert not any((repo / "runs").rglob("*.pt")), "a finished stage left resumable state"
    untracked = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert not [line for line in untracked
                if line[3:].startswith(("data/", "models/", "predictions/", ".avfmae/"))]
    before = outputs_digest(repo)

    # same tensors → same bytes in a new process, so nothing downstream reruns
    dvc(repo, "repro", "--force", "--single-item", "pretrain")
    assert outputs_digest(repo) == before
    assert stale_stages(repo) == set()

    params = (repo / "params.yaml").read_text()
    for edit, says in ((["model.scale", "tinyy"], "model.scale: 'tinyy' is not registered"),
                       (["pretrain.betas", [1.5, 0.95]], "pretrain.betas[0]: 1.5 is out of range"),
                       (["finetune.stages", ["s3"]], "dvc.yaml")):
        edit_params(repo / "params.yaml", {edit[0]: edit[1]})  # no `avfmae pipeline`
        res = dvc(repo, "repro", check=False)
        assert res.returncode != 0 and says in res.stdout + res.stderr, res.stderr[-2000:]
        assert stages_run(res.stdout) == ["check"]
        assert outputs_digest(repo) == before, edit
        (repo / "params.yaml").write_text(params)
    assert "run `avfmae pipeline`" in res.stdout + res.stderr

    encoder = repo / "models/pretrain/encoder.safetensors"
    assert encoder.stat().st_nlink == 1  # a copy, not a hardlink into the cache
    with open(encoder, "r+b") as f:
        f.seek(1024)
        f.write(os.urandom(4096))
    assert "pretrain" in stale_stages(repo)
    dvc(repo, "checkout", "--force")
    assert outputs_digest(repo) == before
    assert repro(repo) == []  # the checkout restored the stamps too


def _check_code_edits(repo: Path) -> None:
    """A docstring edit reruns only the check; a code change reruns the stages importing it."""
    report_py = repo / "avfmae/eval/report.py"
    report_py.write_text(report_py.read_text().replace('"""', '"""Reworded. ', 1))
    assert repro(repo) == ["check"]
    report_py.write_text(report_py.read_text() + "\n_EDITED = True\n")
    assert repro(repo) == ["check", "report"]
    blocks = repo / "avfmae/models/blocks.py"
    original = blocks.read_text()
    blocks.write_text(original + "\n_EDITED = True\n")
    dvc(repo, "repro", "--single-item", "check")
    assert {s.split("@")[0] for s in stale_stages(repo)} == {
        "pretrain", "finetune_s1", "finetune_s2", "finetune_s3", "evaluate"}
    blocks.write_text(original)
    dvc(repo, "repro", "--single-item", "check")
    assert stale_stages(repo) == set()


def test_push_then_pull_into_a_fresh_clone(reproduced_copy: Path, tmp_path: Path):
    micro_repo = reproduced_copy
    assert repro(micro_repo) == []  # a copied finished run is a finished run
    remote = tmp_path / "remote"
    dvc(micro_repo, "remote", "add", "-d", "store", str(remote))
    dvc(micro_repo, "push")
    git(micro_repo, "add", "-A")
    git(micro_repo, "commit", "-qm", "results")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(micro_repo), str(clone))
    dvc(clone, "pull")
    for rel in FINAL_ARTIFACTS:
        assert (clone / rel).read_bytes() == (micro_repo / rel).read_bytes(), rel
    status = dvc(clone, "status").stdout
    assert "Data and pipelines are up to date" in status


def test_killed_repro_resumes_pretraining(reproduced_copy: Path):
    micro_repo = reproduced_copy  # the data stages are done: pretraining is what runs
    set_params(micro_repo, {"pretrain.epochs": 4, "pretrain.checkpoint_every_steps": 1})
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "pretrain"], cwd=micro_repo, env=env,
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

    out = dvc(micro_repo, "repro", "pretrain").stdout
    assert stages_run(out) == ["pretrain"]
    log = (micro_repo / "logs/pretrain/pretrain.log").read_text()
    assert re.search(r"resumed from \S*checkpoint-\d+\.pt \(step \d+", log), log[-2000:]

    # the resumed run's outputs are byte-identical to an uninterrupted run's
    resumed = outputs_digest(micro_repo)
    assert not (micro_repo / "runs/pretrain").exists()
    dvc(micro_repo, "repro", "--force", "--single-item", "pretrain")
    assert outputs_digest(micro_repo) == resumed
    assert not {s for s in stale_stages(micro_repo) if s.startswith(("check", "pretrain"))}


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_repro_resumes_preprocessing(micro_repo: Path):
    """DVC deletes the output folder before it runs a stage; the store is built under runs/, so
    a killed preprocess resumes its finished clips and ends byte-identical to a clean run."""
    set_params(micro_repo, {"preprocess.workers": 1})
    dvc(micro_repo, "repro", "index@synthetic")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen([str(BIN / "dvc"), "repro", "preprocess@synthetic"], cwd=micro_repo,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done = micro_repo / "runs/preprocess/synthetic/.work/done.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, "preprocessing ended before it was killed"
        if done.is_file() and len(done.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(done.read_text().splitlines())
    assert 5 <= finished < 42

    out = dvc(micro_repo, "repro", "preprocess@synthetic").stdout
    assert "preprocess" in stages_run(out)
    log = (micro_repo / "logs/preprocess/synthetic.log").read_text()
    resumed = [int(n) for n in re.findall(r"(\d+) already done", log)]
    assert resumed and resumed[-1] >= finished, log[-2000:]
    assert not (micro_repo / "runs/preprocess/synthetic").exists()
    store = micro_repo / "data/processed/synthetic"
    after_resume = _tree_digest(store)

    dvc(micro_repo, "repro", "--force", "--single-item", "preprocess@synthetic")
    assert _tree_digest(store) == after_resume
    assert not {s for s in stale_stages(micro_repo) if s.startswith(("index", "preprocess"))}
