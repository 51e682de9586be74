"""The command line: help for every stage, readable errors, no tracebacks for user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from param_files import edit_params, write_default_params

from avfmae.cli import build_parser, find_project_root
from avfmae.config import load_params
from avfmae.errors import UserError
from avfmae.pipeline import generated_files

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


def _project(root: Path) -> Path:
    """Default params and the files generated from them: what the CLI needs to find a
    project."""
    root.mkdir(parents=True)
    write_default_params(root / "params.yaml")
    for rel, text in generated_files(load_params(root / "params.yaml")).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_project_root_is_the_nearest_folder_with_params_yaml(tmp_path):
    project = tmp_path / "project"
    inner = project / "data" / "raw"
    inner.mkdir(parents=True)
    (project / "params.yaml").write_text("")  # no dvc.yaml yet: `avfmae pipeline` writes it
    assert find_project_root(inner) == project
    assert find_project_root(project) == project
    with pytest.raises(UserError, match="not inside an avfmae project"):
        find_project_root(tmp_path)


def test_commands_work_from_a_subfolder_and_log_at_the_root(tmp_path):
    project = _project(tmp_path / "project")
    sub = project / "notes" / "deep"
    sub.mkdir(parents=True)
    ok = subprocess.run([*AVFMAE, "pipeline", "--check"], capture_output=True, text=True, cwd=sub)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "up to date"
    # a user mistake: one line on the terminal, the traceback in the stage's log at the root
    bad = subprocess.run([*AVFMAE, "index", "nosuch"], capture_output=True, text=True, cwd=sub)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [bad.stderr.splitlines()[0]]
    assert bad.stderr.startswith("avfmae index: error: unknown dataset 'nosuch'")
    log_text = (project / "logs" / "index" / "nosuch.log").read_text()
    assert "unknown dataset 'nosuch'" in log_text and "Traceback" in log_text
    assert not (sub / "logs").exists()


def test_params_option_is_relative_to_the_starting_folder(tmp_path, write_params):
    project = _project(tmp_path / "project")
    sub = project / "variants"
    sub.mkdir()
    (sub / "bad.yaml").write_text(write_params({"pretrain.epochs": -1}).read_text())
    res = subprocess.run([*AVFMAE, "--params", "bad.yaml", "params"], capture_output=True,
                         text=True, cwd=sub)
    assert res.returncode == 2
    assert "pretrain.epochs: -1 is out of range" in res.stderr


def test_outside_a_project_params_commands_fail_with_one_line(tmp_path):
    for command in (["params"], ["report"]):
        res = subprocess.run([*AVFMAE, *command], capture_output=True, text=True, cwd=tmp_path)
        assert res.returncode == 2
        assert res.stderr == (f"avfmae {command[0]}: error: not inside an avfmae project: no "
                              f"folder from {tmp_path} up holds params.yaml\n")
    assert list(tmp_path.iterdir()) == []


def test_commands_without_params_run_anywhere(tmp_path):
    listed = subprocess.run([*AVFMAE, "datasets"], capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "synthetic" in listed.stdout
    missing = subprocess.run([*AVFMAE, "convert", "published.pth", "out.safetensors"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "avfmae convert: error: published.pth: no such file\n"
    assert list(tmp_path.iterdir()) == []  # no logs/ where the user stands


def test_convert_takes_the_checkpoints_sizes(tmp_path):
    import torch
    from reference_data import load_reference

    from avfmae.models import create_model, load_checkpoint

    # the published code's small pretraining model: no registered scale has its sizes
    torch.save(load_reference("vector_pretrain_small.pt")["state_dict"], tmp_path / "ckpt.pth")
    guessed = subprocess.run([*AVFMAE, "convert", "ckpt.pth", "out.safetensors"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert guessed.returncode == 2
    assert "match no registered scale" in guessed.stderr and "Traceback" not in guessed.stderr
    assert len(guessed.stderr.splitlines()) == 1
    sizes = {"embed_dim": 48, "num_heads": 3, "fusion_num_heads": 3, "decoder_embed_dim": 32,
             "decoder_num_heads": 2, "skip_layers": [0, 2, 3]}
    flags = [arg for k, v in sizes.items() for arg in ("--size", f"{k}={v}")]
    res = subprocess.run([*AVFMAE, "convert", "ckpt.pth", "out.safetensors", "--scale", "small",
                          *flags], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pretrain checkpoint, scale 'small'" in res.stdout and "OK" in res.stdout
    model = create_model("small", pretrain=True, reference_compatible=True, **sizes)
    model.load_state_dict(load_checkpoint(tmp_path / "out.safetensors"), strict=True)


def test_convert_errors_name_the_problem_and_write_nothing(tmp_path):
    import torch

    from avfmae.errors import CheckpointError
    from avfmae.models.convert import convert_checkpoint

    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: not a readable checkpoint"):
        convert_checkpoint(tmp_path / "empty.pth", tmp_path / "out.pt")
    torch.save({"model": {"encoder.norm.weight": torch.ones(4)}}, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match="name the scale they change"):
        convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "out.pt", sizes={"depth": 2})
    with pytest.raises(CheckpointError, match="skip_layers"):
        convert_checkpoint(tmp_path / "ckpt.pth", tmp_path / "out.pt", scale="tiny",
                           sizes={"skip_layers": 3})
    assert not (tmp_path / "out.pt").exists()


def test_size_flags_parse_as_yaml():
    args = build_parser().parse_args(["convert", "a", "b", "--scale", "base", "--size",
                                      "depth=6", "--size", "skip_layers=[1, 3, 5]"])
    assert dict(args.size) == {"depth": 6, "skip_layers": [1, 3, 5]}


def test_torchrun_processes_get_the_params_file_as_an_absolute_path(monkeypatch, tmp_path):
    import avfmae.cli as cli

    calls = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(cli, "_note_cpu_fallback", lambda nproc: None)
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    argv = ["--params", "variant.yaml", "pretrain", "--nproc", "2", "--resume", "never"]
    args = build_parser().parse_args(argv)
    assert cli._relaunch_under_torchrun(args, argv, tmp_path / "variant.yaml") == 0
    cmd = calls[0]
    assert cmd[cmd.index("avfmae") + 1:] == ["--params", str(tmp_path / "variant.yaml"),
                                            "pretrain", "--resume", "never"]


def test_progress_bars_redraw_on_a_terminal_and_write_rarely_to_a_log():
    import io

    from avfmae.progress import LOG_INTERVAL_S, progress

    log = io.StringIO()  # not a terminal
    with progress(1000, "work", file=log) as bar:
        for _ in range(1000):
            bar.update(1)
    assert bar.mininterval == LOG_INTERVAL_S
    lines = [line for line in log.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "1000/1000" in lines[-1]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress(10, "work", file=Terminal()).mininterval == 0.5
