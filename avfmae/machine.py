"""What a result was made on: CPU model, its bf16 matrix units, threads, torch, device and the
precision ``amp`` resolves to there. Figures differ across CPUs and precisions (``docs/speed.md``),
so every figure the pipeline reports carries this record; the fields are those of
``benchmarks/bench_model.py``'s, plus the precision.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe_machine"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(amp: str) -> dict[str, Any]:
    """This machine, with the precision that the ``amp`` setting ``amp`` runs at on its
    default device (CUDA when present, as the training stages choose)."""
    import torch

    from avfmae.train.amp import Precision, cpu_has_bf16_matrix_units

    device = "cuda" if torch.cuda.is_available() else "cpu"
    info: dict[str, Any] = {"cpu": cpu_model(), "amx": cpu_has_bf16_matrix_units(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "device": device, "precision": Precision.create(amp, device).name}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
