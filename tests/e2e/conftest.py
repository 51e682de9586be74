"""End-to-end fixtures (helpers live in ``pipeline_repo.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pipeline_repo import MICRO_PARAMS, Reproduced, copy_checkout, git, repro, set_params


@pytest.fixture
def micro_repo(tmp_path: Path) -> Path:
    """A clean checkout with the micro configuration committed."""
    return _micro_checkout(tmp_path / "repo")


def _micro_checkout(dst: Path) -> Path:
    repo = copy_checkout(dst)
    set_params(repo, MICRO_PARAMS)
    git(repo, "commit", "-qam", "micro configuration")
    return repo


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Reproduced:
    """One full ``dvc repro`` of the micro checkout, shared by every test that starts from a
    finished run (a full run costs a 2-core machine over a minute). Read it, never change it:
    a test that changes the run works on :func:`reproduced_copy`."""
    repo = _micro_checkout(tmp_path_factory.mktemp("reproduced") / "repo")
    return Reproduced(repo, repro(repo))


@pytest.fixture
def reproduced_copy(reproduced: Reproduced, tmp_path: Path) -> Path:
    """A copy of the shared finished run (git history, DVC cache and outputs) of its own."""
    return Path(shutil.copytree(reproduced.repo, tmp_path / "repo", symlinks=True))
