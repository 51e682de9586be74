"""The GPU benchmark matrix, for a CUDA machine: ours against the published computation in fp32
and bf16, the SDPA kernels, a batch sweep to the memory limit, ``torch.compile``, and one against
two processes. Every step reports its operations, the rate reached and the model FLOP
utilisation (MFU) against the measured ``torch.mm`` ceiling and the datasheet peak.

    python3 benchmarks/bench_gpu.py                     # base scale, both models
    python3 benchmarks/bench_gpu.py --quick             # fewer runs, smaller sweep

One JSON line per figure on stdout (``bench_model.py``'s fields plus ``mfu_*``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_model import emit, machine, matmul_peak, measure  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

# Dense bf16 / fp32 (no tensor cores) peaks of the H100/H200 SXM datasheet, TFLOP/s.
DATASHEET_TFLOPS = {"H100": {"bf16": 989.4, "fp32": 66.9}, "H200": {"bf16": 989.4, "fp32": 66.9}}
SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def datasheet_peak(precision: str) -> float | None:
    name = torch.cuda.get_device_name()
    for chip, peaks in DATASHEET_TFLOPS.items():
        if chip in name:
            return peaks[precision] * 1e3
    return None


def report(key: dict, r: dict, peaks: dict, common: dict, **extra) -> dict:
    """Emit one configuration's step time, rate and MFU; return the emitted fields."""
    best = min(r["fwd_bwd_s"])
    rate = r["fwd_bwd_gflop"] / best
    precision = key["precision"]
    fields = dict(**key, metric="fwd_bwd_s", median=round(statistics.median(r["fwd_bwd_s"]), 5),
                  min=round(best, 5), gflop=round(r["fwd_bwd_gflop"], 1),
                  tflop_per_s=round(rate / 1e3, 1),
                  mfu_vs_measured_mm=round(rate / peaks[precision], 3),
                  peak_memory_gib=round(r["peak_gib"], 2),
                  clips_per_s=round(key["batch"] / best, 1), **extra, **common)
    sheet = datasheet_peak(precision)
    if sheet:
        fields["mfu_vs_datasheet"] = round(rate / sheet, 3)
    emit(**fields)
    return fields


def run(key: dict, args: argparse.Namespace, peaks: dict, common: dict, **extra) -> dict | None:
    torch.cuda.empty_cache()
    try:
        r = measure(key["model"], key["scale"], key["batch"], key["impl"], key["precision"],
                    args.runs, args.warmup, args.threads, "cuda")
    except torch.OutOfMemoryError:
        emit(**key, metric="out_of_memory", **extra, **common)
        return None
    return report(key, r, peaks, common, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="base")
    parser.add_argument("--models", nargs="+", default=["pretrain", "classifier"])
    parser.add_argument("--batch", type=int, default=8, help="batch of the comparisons")
    parser.add_argument("--sweep", nargs="+", type=int, default=[2, 8, 32, 64, 128, 256])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile-batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device")
    if args.quick:
        args.runs, args.warmup, args.sweep = 5, 2, [8, 64]
    common = {"machine": machine("cuda", args.threads)}
    peaks = {}
    for precision, n in (("bf16", 8192), ("fp32", 4096)):
        peaks[precision] = matmul_peak(precision, n, args.threads, "cuda")
        emit(metric="mm_peak_gflop_per_s", precision=precision, n=n,
             value=round(peaks[precision], 1), **common)

    for model in args.models:
        base = {"model": model, "scale": args.scale, "batch": args.batch}
        times = {}
        for precision in ("fp32", "bf16"):
            for impl in ("published", "ours"):
                r = run({**base, "impl": impl, "precision": precision}, args, peaks, common)
                times[impl, precision] = r and r["median"]
            if times["published", precision] and times["ours", precision]:
                emit(**base, precision=precision, metric="fwd_bwd_speedup_vs_published",
                     value=round(times["published", precision] / times["ours", precision], 3),
                     **common)
        for name, backend in SDPA_BACKENDS.items():
            key = {**base, "impl": "ours", "precision": "bf16"}
            try:
                with sdpa_kernel(backend):
                    run(key, args, peaks, common, sdpa=name)
            except RuntimeError as err:  # a kernel that refuses these shapes or this dtype
                emit(**key, sdpa=name, metric="unsupported", error=str(err).splitlines()[0],
                     **common)
        for batch in args.sweep:
            if run({**base, "batch": batch, "impl": "ours", "precision": "bf16"},
                   args, peaks, common, sweep=True) is None:
                break
        start = time.perf_counter()
        run({**base, "batch": args.compile_batch, "impl": "compiled", "precision": "bf16"},
            args, peaks, common)
        emit(**base, metric="compile_and_measure_s", value=round(time.perf_counter() - start, 1),
             **common)
    if torch.cuda.device_count() < 2:
        emit(metric="ddp_two_processes", skipped="one GPU: NCCL needs a device per process",
             **common)


if __name__ == "__main__":
    main()
