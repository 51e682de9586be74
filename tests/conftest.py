"""Shared fixtures: the repository root and a params file writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from param_files import MICRO, default_params, write_default_params

from avfmae.config import with_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def write_params(tmp_path: Path):
    """Write params.yaml of the code's defaults with some keys changed (dotted → value)."""

    def write(changes: dict[str, object] | None = None, drop: str | None = None) -> Path:
        raw = with_overrides(default_params(), changes or {})
        if drop:
            *parents, leaf = drop.split(".")
            node = raw
            for part in parents:
                node = node[part]
            del node[leaf]
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def micro_store(tmp_path_factory) -> Path:
    """A work folder with micro params and the synthetic data generated, indexed and
    preprocessed through the real stages (built once per session; copy it before writing)."""
    import os

    from avfmae.config import load_params
    from avfmae.data.download import download
    from avfmae.data.index import index
    from avfmae.preprocess import preprocess

    work = tmp_path_factory.mktemp("micro")
    write_default_params(work / "params.yaml", MICRO)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        params = load_params()
        download("synthetic", params)
        index("synthetic", params)
        preprocess("synthetic", params)
    finally:
        os.chdir(cwd)
    return work


@pytest.fixture
def micro_work(micro_store: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of :func:`micro_store`, made the current directory."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(micro_store, work, symlinks=True)
    monkeypatch.chdir(work)
    return work
