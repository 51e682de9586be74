"""End-to-end fixtures (helpers live in ``pipeline_repo.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_repo import MICRO_PARAMS, copy_checkout, git, set_params


@pytest.fixture
def micro_repo(tmp_path: Path) -> Path:
    """A clean checkout with the micro configuration committed."""
    repo = copy_checkout(tmp_path / "repo")
    set_params(repo, MICRO_PARAMS)
    git(repo, "commit", "-qam", "micro configuration")
    return repo
