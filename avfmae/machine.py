"""What a result was made on, and the precision a setting runs at there.

Figures differ across CPUs and precisions (``docs/speed.md``), so every figure the pipeline
reports carries :func:`describe_machine`'s record: CPU model, its bf16 matrix units, threads,
torch, device and precision (the fields of ``benchmarks/bench_model.py``'s record, plus the
precision). How an ``amp`` setting resolves on a device lives here, below the training code,
so that the report can name the precision without depending on the training modules.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["AMP_MODES", "cpu_has_bf16_matrix_units", "cpu_model", "describe_machine",
           "precision_name", "resolve_amp_dtype"]

AMP_MODES = ("auto", "off", "bf16", "fp16")


def resolve_amp_dtype(mode: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype for ``mode`` on ``device``; ``None`` means fp32 (no autocast)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp mode {mode!r} is not one of {list(AMP_MODES)}")
    dev = torch.device(device)
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        return torch.float16
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16_matrix_units() else None


def cpu_has_bf16_matrix_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in dedicated tiles (Intel AMX)."""
    return bool(torch.cpu._is_amx_tile_supported())


def precision_name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


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
    """This machine, with the precision the ``amp`` setting ``amp`` runs at on its default
    device (CUDA when present, as the training stages choose)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info: dict[str, Any] = {"cpu": cpu_model(), "amx": cpu_has_bf16_matrix_units(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "device": device,
                            "precision": precision_name(resolve_amp_dtype(amp, device))}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
