"""Seeds: one place that turns (seed, keys…) into RNG state (docs/model.md F15).

Use :func:`make_generator` for per-sample randomness keyed by ``(seed, epoch, index)`` so that
augmentations and masks do not depend on the number of workers, ranks or on resuming mid-epoch;
:func:`seed_worker` as the DataLoader ``worker_init_fn`` so that workers never share NumPy or
Python RNG state.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator", "numpy_generator", "seed_everything", "seed_worker"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed mixed from ``seed`` and integer ``keys`` (NumPy ``SeedSequence``)."""
    state = np.random.SeedSequence([int(seed), *(int(k) for k in keys)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def make_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, *keys)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, *keys))


def numpy_generator(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy ``Generator`` seeded with :func:`derive_seed` ``(seed, *keys)``."""
    return np.random.default_rng(derive_seed(seed, *keys))


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed NumPy and ``random`` from the worker's torch seed."""
    base = torch.initial_seed()
    random.seed(base)
    np.random.seed(base % (1 << 32))
