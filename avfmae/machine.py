"""What a result was made on, and the precision a setting runs at there.

Figures differ across CPUs and precisions (``docs/speed.md``), so every figure the pipeline
reports carries :func:`describe_machine`'s record: CPU model, the vector instruction set torch
uses on it, its bf16 matrix units, threads,
torch, device and precision (the fields of ``benchmarks/bench_model.py``'s record, plus the
precision). How an ``amp`` setting resolves on a device lives here, below the training code,
so that the report can name the precision without depending on the training modules.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["AMP_MODES", "cpu_has_bf16_matrix_units", "cpu_label", "cpu_model",
           "describe_machine", "precision_name", "resolve_amp_dtype", "vector_isa"]

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


def vector_isa() -> str:
    """The vector instruction set torch's CPU kernels use here (``AVX2``, ``AVX512``, …):
    CPUs sold under one model name differ in it (AMD EPYC Zen 3: AVX2, Zen 4: AVX512), and so
    do their float results."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_label(machine: dict[str, Any]) -> str:
    """``"<model> (<vector ISA>, AMX: yes|no)"`` of a machine record; records made before the
    ISA was recorded give ``"<model> (AMX: …)"``."""
    isa = f"{machine['vector_isa']}, " if machine.get("vector_isa") else ""
    return f"{machine['cpu']} ({isa}AMX: {'yes' if machine.get('amx') else 'no'})"


def describe_machine(amp: str) -> dict[str, Any]:
    """This machine, with the precision the ``amp`` setting ``amp`` runs at on its default
    device (CUDA when present, as the training stages choose)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info: dict[str, Any] = {"cpu": cpu_model(), "vector_isa": vector_isa(),
                            "amx": cpu_has_bf16_matrix_units(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "device": device,
                            "precision": precision_name(resolve_amp_dtype(amp, device))}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info
