"""End-to-end fixtures: a throwaway copy of the repository with a micro configuration.

The copy holds the tracked and untracked-but-not-ignored files of this checkout, committed into
a fresh git repository, so the tests see what a clean clone sees. The real ``dvc``, ``snakemake``
and ``avfmae`` CLIs of the running interpreter's environment are put first on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from param_files import MICRO, edit_params, write_default_params

from avfmae.config import load_params
from avfmae.pipeline import generated_files

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MICRO_PARAMS = {**MICRO, "pretrain.epochs": 1, "pretrain.checkpoint_every_steps": 2}


def run(cmd: list[str] | str, cwd: Path, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a CLI in ``cwd`` with this environment's tools first on PATH; output captured."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         shell=isinstance(cmd, str), **kw)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}\n"
                             f"{res.stderr[-4000:]}")
    return res


@dataclass(frozen=True)
class Reproduced:
    """A micro checkout after one full ``dvc repro``, and the stages that run ran in order."""

    repo: Path
    stages: list[str]


def stages_run(output: str) -> list[str]:
    """Base names of the stages `dvc repro` ran, in order (matrix suffixes dropped)."""
    return [name.split("@")[0] for name in re.findall(r"Running stage '([^']+)'", output)]


def repro(repo: Path) -> list[str]:
    """Run `dvc repro` in ``repo``; the stages it ran."""
    return stages_run(run([str(BIN / "dvc"), "repro"], cwd=repo).stdout)


def set_params(repo: Path, changes: dict[str, object]) -> None:
    """Edit params.yaml in place (dotted keys) and regenerate dvc.yaml."""
    edit_params(repo / "params.yaml", changes)
    run([str(BIN / "avfmae"), "pipeline"], cwd=repo)


def copy_checkout(dst: Path) -> Path:
    """The files a clean clone would have, as a fresh git repository with one commit; its
    ``params.yaml`` holds the code's defaults (not this checkout's edits) and the generated
    files match it."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_symlink():  # the root's profile links (./slurm, ./local)
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).symlink_to(os.readlink(src))
        elif src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    write_default_params(dst / "params.yaml")
    for rel, text in generated_files(load_params(dst / "params.yaml")).items():
        (dst / rel).write_text(text)
    git(dst, "init", "-q")
    git(dst, "add", "-A")
    git(dst, "commit", "-qm", "clean checkout")
    return dst


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=True).stdout
