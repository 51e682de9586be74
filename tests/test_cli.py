"""The command line: help for every stage, readable errors, no tracebacks for user errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from param_files import edit_params, write_default_params

from avfmae.cli import build_parser

AVFMAE = [sys.executable, "-m", "avfmae"]
STAGES = ["download", "index", "preprocess", "pretrain", "finetune", "evaluate", "report"]


def test_every_pipeline_stage_has_a_subcommand():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(STAGES) <= set(sub.choices)


@pytest.mark.parametrize("stage", STAGES)
def test_help_explains_each_stage(stage):
    res = subprocess.run([*AVFMAE, stage, "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "usage: avfmae " + stage in res.stdout
    assert len(res.stdout.splitlines()) >= 4


def test_bad_params_exit_nonzero_without_traceback(write_params):
    path = write_params({"pretrain.epochs": -1})
    res = subprocess.run([*AVFMAE, "--params", str(path), "params"], capture_output=True,
                         text=True)
    assert res.returncode == 2
    assert "pretrain.epochs: -1 is out of range" in res.stderr
    assert "Traceback" not in res.stderr


def test_params_explain_lists_ranges(repo_root):
    res = subprocess.run([*AVFMAE, "params", "--explain"], capture_output=True, text=True,
                         cwd=repo_root)
    assert res.returncode == 0
    assert "preprocess.margin = 0.25  allowed [0, 1]" in res.stdout


def test_usage_error_is_argparse_exit_2():
    res = subprocess.run([*AVFMAE, "finetune", "--stage", "s9"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "invalid choice" in res.stderr


def test_pipeline_check_flags_stale_files(tmp_path):
    write_default_params(tmp_path / "params.yaml")
    assert subprocess.run([*AVFMAE, "pipeline"], capture_output=True, cwd=tmp_path).returncode == 0
    generated = (tmp_path / "dvc.yaml").read_text()
    ok = subprocess.run([*AVFMAE, "pipeline", "--check"], capture_output=True, text=True,
                        cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    edit_params(tmp_path / "params.yaml", {"data.folds": [1, 2]})
    stale = subprocess.run([*AVFMAE, "pipeline", "--check"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert stale.returncode == 2
    assert "stale generated files: dvc.yaml" in stale.stderr
    assert (tmp_path / "dvc.yaml").read_text() == generated
