"""Editing params files in tests, and the micro configuration that keeps real stages fast.

Tests start from the code's defaults (:class:`avfmae.config.Params`), never from the values in
the checkout's ``params.yaml``: that file is the user's, and an ablation edit there must not
change what the test suite runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from avfmae.config import Params, with_overrides

# Small enough for a 2-core CI machine, big enough that every stage does real work.
MICRO = {
    "data.folds": [1],
    "data.s1_pool": [],  # the pooled-s1 chain has its own e2e test (test_task_families.py)
    "data.synthetic.n_speakers": 6,
    "data.synthetic.n_pool_speakers": 2,
    "data.synthetic.clips_per_class": 1,
    "data.synthetic.pool_clips_per_speaker": 3,
    "data.synthetic.duration_s": 2.0,
    "pretrain.epochs": 2,
    "pretrain.batch_size": 4,
    "pretrain.num_workers": 0,
    "finetune.num_workers": 0,
    "finetune.s1.epochs": 1,
    "finetune.s2.epochs": 1,
    "finetune.s3.epochs": 1,
    "finetune.s1.batch_size": 4,
    "finetune.s2.batch_size": 4,
    "finetune.s3.batch_size": 4,
    "eval.num_windows": 1,
}


def edit_params(path: Path, changes: dict[str, object]) -> None:
    """Change dotted keys of a params file in place."""
    raw = with_overrides(yaml.safe_load(path.read_text()), changes)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def default_params() -> dict[str, Any]:
    """Every params key with the code's default value, as ``params.yaml`` holds it."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    return plain(dataclasses.asdict(Params()))


def write_default_params(path: Path, changes: dict[str, object] | None = None) -> Path:
    """Write a params file of the code's defaults with ``changes`` (dotted keys) applied."""
    path.write_text(yaml.safe_dump(with_overrides(default_params(), changes or {}), sort_keys=False))
    return path
