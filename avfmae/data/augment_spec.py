"""The RandAugment setting of a fine-tuning stage: a timm-style string such as
``rand-m7-n4-mstd0.5-inc1``, parsed when ``params.yaml`` is loaded (so this module imports
nothing heavy; the ops live in :mod:`avfmae.data.video_transforms`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RandAugmentSpec", "parse_rand_augment"]


@dataclass(frozen=True)
class RandAugmentSpec:
    magnitude: float = 7.0
    num_ops: int = 4
    mstd: float = 0.5
    increasing: bool = True
    prob: float = 0.5  # each chosen op is applied with this probability (timm default)


def parse_rand_augment(spec: str) -> RandAugmentSpec:
    """Parse a timm-style config string, e.g. ``rand-m7-n4-mstd0.5-inc1``."""
    parts = spec.split("-")
    if not parts or parts[0] != "rand":
        raise ValueError(f"rand augment spec must start with 'rand-': {spec!r}")
    kw: dict = {}
    keys = {"m": ("magnitude", float), "n": ("num_ops", int), "mstd": ("mstd", float),
            "inc": ("increasing", lambda v: bool(int(v))), "p": ("prob", float)}
    for part in parts[1:]:
        m = re.fullmatch(r"([a-z]+)([0-9.]+)", part)
        if not m or m.group(1) not in keys:
            raise ValueError(f"bad rand augment field {part!r} in {spec!r}")
        name, conv = keys[m.group(1)]
        kw[name] = conv(m.group(2))
    return RandAugmentSpec(**kw)
