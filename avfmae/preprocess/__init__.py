"""Face detection/tracking/cropping and audio extraction into the clip store.

Entry point: :func:`preprocess` (``avfmae preprocess <ds>``) — see :mod:`.stage` for the store
layout, resumability and reject handling, :mod:`.faces` for the face track, :mod:`.media` for
decoding/encoding, :mod:`.settings` for the fingerprint and :mod:`.schema` for the tables.
Names are imported lazily so that worker processes load only what they use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "preprocess",
    "preprocess_manifest",
    "PreprocessError",
    "Settings",
    "fingerprint",
    "worker_count",
    "REASONS",
]

_WHERE = {
    "preprocess": "stage",
    "preprocess_manifest": "stage",
    "PreprocessError": "stage",
    "worker_count": "stage",
    "Settings": "settings",
    "fingerprint": "settings",
    "REASONS": "schema",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
