"""The published-code reference vectors and parameter manifests the model tests check against.

The vectors, made by running the published model code, live in ``tests/fixtures/reference`` (its
README says how each file was made), so a clean clone tests against them with nothing outside the
repository. ``$AVFMAE_REFERENCE_DIR`` points the tests at another copy, e.g. newer vectors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REFERENCE_DIR = Path(os.environ.get("AVFMAE_REFERENCE_DIR")
                     or Path(__file__).resolve().parent / "fixtures" / "reference")


def reference_path(name: str) -> Path:
    path = REFERENCE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"reference file {path} is missing (AVFMAE_REFERENCE_DIR?)")
    return path


def load_reference(name: str) -> dict:
    return torch.load(reference_path(name), map_location="cpu", weights_only=True)
