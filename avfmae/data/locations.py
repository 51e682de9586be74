"""Where a dataset's own files are read: a copy named in ``data.local_copies``, the
user-placed copy of a licensed dataset, the user's folder for the ``folder`` pool, or else what
the download stage materialised from its source or a mirror of it."""

from __future__ import annotations

import os
from pathlib import Path

from avfmae import pipeline
from avfmae.config import Params
from avfmae.data import registry

__all__ = ["media_root", "local_copy", "mirror"]


def media_root(name: str, params: Params) -> Path:
    """Where the dataset's own files are read: ``data.local_copies[name]`` when set, else the
    raw folder of a public/generated dataset, the user-placed copy of a licensed one, the
    user's folder for ``folder``."""
    spec = registry.get(name)
    local = local_copy(name, params)
    if local is not None:
        return local
    if spec.source.kind == "user":
        custom = getattr(params.data, "folder_path", "") or ""
        return Path(custom) if custom else Path(params.data.licensed_root) / spec.source.dir_name
    if spec.source.kind == "licensed":
        return Path(params.data.licensed_root) / spec.source.dir_name
    return pipeline.path("download", "raw", params, ds=name)


def local_copy(name: str, params: Params) -> Path | None:
    """The folder ``data.local_copies[name]`` names, if any: an existing copy of the dataset,
    read in place instead of being downloaded (or looked for under ``licensed_root``)."""
    path = (getattr(params.data, "local_copies", {}) or {}).get(name, "")
    return Path(path) if path else None


def mirror(name: str, params: Params) -> str:
    """The base URL replacing a public source's hosts, if any (environment wins over params)."""
    env = os.environ.get(f"AVFMAE_MIRROR_{name.upper()}", "")
    if env:
        return env.rstrip("/")
    mirrors = getattr(params.data, "mirrors", {})
    return (mirrors or {}).get(name, "").rstrip("/")
