"""A user's ``params.yaml`` edit never breaks the test suite.

``params.yaml`` is the user's experiment file: the README's ablations are one edit each, and
``dvc exp run -S`` leaves its values in the workspace. The tests start from the code's defaults
(``tests/param_files.py``), so only the tests of the committed files themselves read it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from pipeline_repo import REPO, copy_checkout, run, set_params

# The README's ablations at once, plus a different model, folds and stage recipe.
USER_EDITS = {
    "finetune.init": "random",
    "finetune.modality": "video",
    "pretrain.modality": "video",
    "finetune.stages": ["s3"],
    "data.s1_pool": [],
    "data.folds": [1, 2],
    "model.scale": "small",
    "finetune.s3.epochs": 30,
    "eval.num_windows": 4,
}

# Tests of the committed files themselves (they validate whatever values the file holds).
READS_THE_CHECKOUTS_PARAMS = ("tests/test_config.py", "tests/test_pipeline.py",
                              "tests/e2e/test_user_params.py")


def test_only_the_tests_of_the_committed_files_read_its_params():
    pattern = re.compile(r"(REPO|repo_root|parents\[\d\]|HERE(\.parent)?)\s*/\s*\"params\.yaml\"")
    readers = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("*.py")
                     if pattern.search(p.read_text()))
    assert set(readers) <= set(READS_THE_CHECKOUTS_PARAMS), readers


@pytest.mark.e2e
def test_the_suite_passes_after_an_ablation_edit(tmp_path: Path):
    repo = copy_checkout(tmp_path / "repo")
    (repo / "params.yaml").write_text((REPO / "params.yaml").read_text())
    set_params(repo, USER_EDITS)  # and `avfmae pipeline`, as the README says
    res = run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-m", "not e2e and not slow", "tests/test_config.py", "tests/test_pipeline.py",
               "tests/test_cli.py", "tests/test_declared_params.py"], cwd=repo, check=False)
    assert res.returncode == 0, res.stdout[-3000:]
    assert " passed" in res.stdout and "failed" not in res.stdout
