"""Fine-tuning from a published checkpoint through the real CLIs, with no pretraining stage."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from pipeline_repo import BIN, run, set_params, stages_run
from reference_data import load_reference

CKPT = "checkpoints/avf-mae-tiny.pth"


def _published_checkpoint(path: Path) -> None:
    """A training checkpoint as the published code saves it (model, epoch, argparse args), with
    the reference vectors' weights: the published names and the ``tiny`` sizes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = load_reference("vector_finetune_small.pt")["state_dict"]
    torch.save({"model": state, "epoch": 99, "args": argparse.Namespace(lr=1e-3)}, path)


def _snakemake_plan(repo: Path, *args: str) -> set[str]:
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", *args], cwd=repo).stdout
    return set(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.M)) - {"all"}


@pytest.mark.slow
def test_published_checkpoint_is_fine_tuned_without_pretraining(reproduced_copy: Path):
    # on a finished run, whose clips the new graph reuses; its pretrained encoder is no longer
    # any stage's output once the graph has no pretraining
    micro_repo = reproduced_copy
    shutil.rmtree(micro_repo / "models" / "pretrain")
    _published_checkpoint(micro_repo / CKPT)
    set_params(micro_repo, {"finetune.init": CKPT, "finetune.stages": ["s1"]})  # s1 is enough
    stages = yaml.safe_load((micro_repo / "dvc.yaml").read_text())["stages"]
    assert "pretrain" not in stages and CKPT in stages["finetune_s1"]["deps"]
    chain = {"download", "index", "preprocess", "finetune_s1", "evaluate", "report"}
    assert _snakemake_plan(micro_repo, "--forceall") == chain  # Snakemake plans the same graph

    res = run([str(BIN / "dvc"), "repro"], cwd=micro_repo)
    ran = stages_run(res.stdout)
    # DVC also runs its `check` stage (stale generated files, per-stage code stamps)
    assert ran == ["check", "finetune_s1", "evaluate", "report"]
    assert re.search(rf"from checkpoint {re.escape(CKPT)} \((\d+) tensors\)|"
                     rf"checkpoint {re.escape(CKPT)} \(\d+ tensors\)", res.stdout + res.stderr)
    assert not (micro_repo / "models" / "pretrain").exists()
    assert (micro_repo / "metrics" / "synthetic" / "fold1" / "test.json").is_file()

    # the checkpoint is a tracked dependency: a new one reruns fine-tuning, not the data stages
    state = torch.load(micro_repo / CKPT, weights_only=False)
    state["model"]["encoder.norm.weight"] = state["model"]["encoder.norm.weight"] * 0.5
    torch.save(state, micro_repo / CKPT)
    status = run([str(BIN / "dvc"), "status"], cwd=micro_repo).stdout
    assert "finetune_s1@synthetic-1" in status
    assert not re.search(r"^(download|index|preprocess)@", status, flags=re.M)
    assert "finetune_s1" in _snakemake_plan(micro_repo)

    # sizes that do not fit model.scale: one line naming them, before any training
    set_params(micro_repo, {"model.scale": "small"})
    bad = run([str(BIN / "avfmae"), "finetune", "--stage", "s1", "--dataset", "synthetic",
               "--fold", "1"], cwd=micro_repo, check=False)
    assert bad.returncode == 2, bad.stderr[-2000:]
    msg = bad.stderr.strip().splitlines()[-1]
    assert "does not fit model.scale 'small'" in msg and "embed_dim 64" in msg, msg
    assert "it is a 'tiny' checkpoint" in msg and "Traceback" not in bad.stderr
