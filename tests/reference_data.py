"""Locate the published-code reference vectors (``shared/reference`` beside the repository).

Searched in order: ``$AVFMAE_REFERENCE_DIR``, ``<repo>/../shared/reference`` (where CI and the
developers' checkouts have it). A clone without them skips the tests that need them, with the
reason; under CI (``CI=true``) their absence is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path | None:
    for root in (os.environ.get("AVFMAE_REFERENCE_DIR"), REPO.parent / "shared" / "reference"):
        if root and Path(root).is_dir():
            return Path(root)
    return None


def reference_path(name: str) -> Path:
    root = reference_dir()
    if root is not None and (root / name).is_file():
        return root / name
    message = f"reference file {name} not found (set AVFMAE_REFERENCE_DIR)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def load_reference(name: str) -> dict:
    return torch.load(reference_path(name), map_location="cpu", weights_only=True)
