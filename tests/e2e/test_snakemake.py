"""Snakemake runs the same chain as DVC, locally and through a real single-node SLURM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pipeline_repo import BIN, Reproduced, run, set_params
from slurm_cluster import job_records, missing_requirements, slurm_cluster

from avfmae import pipeline

pytestmark = pytest.mark.e2e

ARTIFACT_ROOTS = ("data/raw", "data/interim", "data/processed", "models", "metrics", "reports")
# each orchestrator's own marker files, not pipeline artifacts
BOOKKEEPING = {".gitignore", ".snakemake_timestamp"}
RUN_LOCK = ".avfmae/run.lock"


def artifacts(repo: Path) -> set[str]:
    """Every file the pipeline produced, relative to the repository."""
    return {str(p.relative_to(repo)) for root in ARTIFACT_ROOTS
            for p in (repo / root).rglob("*")
            if p.is_file() and p.name not in BOOKKEEPING}


def snakemake(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), *args], cwd=repo, check=check, timeout=1200)


def dry_run(repo: Path) -> set[str]:
    """The pipeline rules ``snakemake -n`` would run now (the target rule ``all`` left out)."""
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=repo).stdout
    return set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M)) - {"all"}


def test_local_profile_matches_dvc(micro_repo: Path, reproduced: Reproduced):
    snakemake(micro_repo, "--cores", "all", "--profile", "local")
    produced = artifacts(micro_repo)
    assert "reports/report.md" in produced
    assert not (micro_repo / RUN_LOCK).exists(), "a finished run keeps its claim"
    assert produced == artifacts(reproduced.repo)  # what `dvc repro` made of the same checkout

    assert dry_run(micro_repo) == set()

    set_params(micro_repo, {"finetune.s3.base_lr": 3.0e-4})
    assert dry_run(micro_repo) == {"finetune_s3", "evaluate", "report"}
    set_params(micro_repo, {"data.synthetic.seed": 1})
    assert dry_run(micro_repo) == {"download", "index", "preprocess", "pretrain", "finetune_s1",
                                   "finetune_s2", "finetune_s3", "evaluate", "report"}


def test_profiles_resolve_from_the_root_and_config_overrides_are_refused(micro_repo: Path):
    for profile in ("slurm", "local"):
        out = snakemake(micro_repo, "--cores", "all", "--profile", profile, "-n").stdout
        assert re.search(r"^(?:local)?rule download:", out, re.M), out[-2000:]
    out = snakemake(micro_repo, "--cores", "all", "--profile", "slurm", "-n", "--verbose").stdout
    # the production profile asks for GPUs as a resource, which the plugin turns into --gpus
    assert re.search(r"^rule pretrain:(?:\n .*)*?\n\s+resources: .*\bgpu=1\b", out, re.M)

    (micro_repo / "variant.yaml").write_text(yaml.safe_dump({"pretrain": {"epochs": 3}}))
    for override in (["--config", "pretrain={'epochs': 3}"], ["--configfile", "variant.yaml"]):
        res = snakemake(micro_repo, "--cores", "1", "-n", *override, check=False)
        assert res.returncode == 1
        assert "--config/--configfile do not reach the avfmae jobs" in res.stderr
        assert "Traceback" not in res.stderr


def _wait_for_claim(repo: Path, tool: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    lock = repo / RUN_LOCK
    while time.monotonic() < deadline:
        if lock.is_file() and f'"tool": "{tool}"' in lock.read_text():
            return
        assert proc.poll() is None, f"{tool} ended before it claimed the checkout"
        time.sleep(0.2)
    raise AssertionError(f"{tool} did not claim the checkout within {timeout:.0f} s")


def _start(repo: Path, cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    return subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_dvc_and_snakemake_refuse_each_other(micro_repo: Path):
    data = "data/processed/synthetic"
    sm = _start(micro_repo, [str(BIN / "snakemake"), "--cores", "1", "--profile", "local", data])
    try:
        _wait_for_claim(micro_repo, "snakemake", sm)
        res = run([str(BIN / "dvc"), "repro"], cwd=micro_repo, check=False, timeout=120)
        assert res.returncode != 0
        assert "Unable to acquire lock" in res.stderr + res.stdout
        assert sm.wait(timeout=600) == 0, sm.stdout.read()[-4000:]
    finally:
        if sm.poll() is None:
            os.killpg(sm.pid, signal.SIGTERM)
    # nothing the refused DVC run could have deleted is missing or stale
    out = snakemake(micro_repo, "--cores", "1", "-n", data).stdout
    assert "Nothing to be done" in out

    dvc = _start(micro_repo, [str(BIN / "dvc"), "repro", "preprocess"])
    try:
        _wait_for_claim(micro_repo, "dvc", dvc)
        res = snakemake(micro_repo, "--cores", "1", "--profile", "local", check=False)
        assert res.returncode == 1
        refusal = res.stderr.strip().splitlines()[-1]
        assert re.search(r"error: (another pipeline run is writing this checkout: dvc \(pid "
                         rf"{dvc.pid} |a DVC command is running on this checkout)", refusal), \
            refusal
        assert dvc.wait(timeout=600) == 0, dvc.stdout.read()[-4000:]
    finally:
        if dvc.poll() is None:
            os.killpg(dvc.pid, signal.SIGTERM)
    status = run([str(BIN / "dvc"), "status", "preprocess"], cwd=micro_repo).stdout
    assert "up to date" in status, status


# The production profile with only what this test cluster needs changed: its partition, no
# accounts and no accounting daemon (status from squeue), short polls; and two GPUs for
# pretraining so that one stage runs torchrun DDP across two processes inside one job.
SITE_PROFILE = {
    "slurm-no-account": True,
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 2,
    "latency-wait": 10,
    "default-resources": {"slurm_partition": "test"},
    "set-resources": {"pretrain": {"gpu": 2}},
}
SUBMITTED = ("index", "preprocess", "pretrain", "finetune_s1", "finetune_s2", "finetune_s3",
             "evaluate")


@pytest.mark.slow
@pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements()))
def test_production_slurm_profile_submits_gpu_jobs(micro_repo: Path, tmp_path: Path):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump(SITE_PROFILE))
    with slurm_cluster(tmp_path / "slurm"):
        snakemake(micro_repo, "--cores", "all", "--profile", "slurm", "--profile", str(site))
        records = job_records()
    assert (micro_repo / "reports/report.md").is_file()

    by_rule: dict[str, list[dict[str, str]]] = {}
    for rec in records:
        by_rule.setdefault(rec["Comment"].removeprefix("rule_").split("_wildcards_")[0],
                           []).append(rec)
    assert sorted(by_rule) == sorted(SUBMITTED), by_rule.keys()
    for rule, recs in by_rule.items():
        gpus = SITE_PROFILE["set-resources"].get(rule, {}).get("gpu", pipeline.stage(rule).gpu)
        for rec in recs:
            assert rec["JobState"] == "COMPLETED", rec
            assert rec["Partition"] == "test", rec
            tres = dict(kv.split("=", 1) for kv in rec["TRES"].split(","))
            assert tres["mem"] == f"{pipeline.stage(rule).mem_mb}M", (rule, tres)
            # without an accounting database the GPUs show as requested and allocated GRES
            if gpus:
                assert rec.get("TresPerJob") == f"gres:gpu:{gpus}", (rule, rec)
                assert rec["JOB_GRES"] == f"gpu:{gpus}", (rule, rec)
            else:
                assert rec["JOB_GRES"] == "(null)", (rule, rec)

    log = (micro_repo / pipeline.snakemake_log("pretrain")).read_text()
    assert "torch.distributed.run --standalone --nproc_per_node=2" in log
    assert re.search(r"batch \d+ x 2\b", log), "pretraining did not run two DDP processes"
    assert "CUDA is not available" in log
