"""Shared fixtures: the repository root and a params file writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def write_params(tmp_path: Path):
    """Write params.yaml from the committed one with some keys changed (dotted → value)."""

    def write(changes: dict[str, object] | None = None, drop: str | None = None) -> Path:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        for dotted, value in (changes or {}).items():
            *parents, leaf = dotted.split(".")
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
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
