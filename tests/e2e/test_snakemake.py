"""Snakemake runs the same chain as DVC, locally and through a real single-node SLURM."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pipeline_repo import BIN, copy_checkout, run, set_params, MICRO_PARAMS
from slurm_cluster import missing_requirements, slurm_cluster

pytestmark = pytest.mark.e2e

ARTIFACT_ROOTS = ("data/raw", "data/interim", "data/processed", "models", "metrics", "reports")
# each orchestrator's own marker files, not pipeline artifacts
BOOKKEEPING = {".gitignore", ".snakemake_timestamp"}


def artifacts(repo: Path) -> set[str]:
    """Every file the pipeline produced, relative to the repository."""
    return {str(p.relative_to(repo)) for root in ARTIFACT_ROOTS
            for p in (repo / root).rglob("*")
            if p.is_file() and p.name not in BOOKKEEPING}


def snakemake(repo: Path, *args: str) -> None:
    run([str(BIN / "snakemake"), *args], cwd=repo, timeout=1200)


def dry_run(repo: Path) -> set[str]:
    """The pipeline rules ``snakemake -n`` would run now (the target rule ``all`` left out)."""
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=repo).stdout
    return set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M)) - {"all"}


def test_local_profile_matches_dvc(micro_repo: Path, tmp_path: Path):
    snakemake(micro_repo, "--cores", "all", "--workflow-profile", "workflow/profiles/local")
    produced = artifacts(micro_repo)
    assert "reports/report.md" in produced

    dvc_repo = copy_checkout(tmp_path / "dvc")
    set_params(dvc_repo, MICRO_PARAMS)
    run([str(BIN / "dvc"), "repro"], cwd=dvc_repo)
    assert produced == artifacts(dvc_repo)

    assert dry_run(micro_repo) == set()

    set_params(micro_repo, {"finetune.s3.base_lr": 3.0e-4})
    assert dry_run(micro_repo) == {"finetune_s3", "evaluate", "report"}
    set_params(micro_repo, {"data.synthetic.seed": 1})
    assert dry_run(micro_repo) == {"download", "index", "preprocess", "pretrain", "finetune_s1",
                                   "finetune_s2", "finetune_s3", "evaluate", "report"}


@pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements()))
def test_slurm_profile_runs_the_chain(micro_repo: Path, tmp_path: Path):
    with slurm_cluster(tmp_path / "slurm"):
        snakemake(micro_repo, "--workflow-profile", "workflow/profiles/slurm-test")
    assert (micro_repo / "reports/report.md").is_file()
    assert (micro_repo / "models/finetune/synthetic/fold1/s3/best.safetensors").is_file()
    logs = list((micro_repo / ".snakemake/slurm_logs").rglob("*.log"))
    assert logs, "no SLURM job logs: the jobs did not go through sbatch"
