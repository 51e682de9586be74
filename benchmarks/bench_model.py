"""Speed and memory of the AVF-MAE++ models, ours against the published computation, measured
side by side in one run on one machine at one precision.

Implementations (``--impls``):

* ``ours``      — the library as is (kernels chosen per device and precision, folded LG
  cross-attentions, no MLP on the classifier's unread local tokens);
* ``published`` — the same weights run the way the published code runs them
  (``published_compute.py``; tested to reproduce the published reference outputs);
* ``compiled``  — ``ours`` under ``torch.compile`` (the warm-up steps pay the compilation).

Each is timed in every precision of ``--precisions`` (``fp32``, ``bf16`` autocast), each
configuration in a fresh process so that its peak memory is its own; with ``--rounds`` > 1 the
configurations alternate and their runs are pooled. The same run also measures the machine's
matrix-product ceiling (``torch.mm`` of ``--peak-n``² matrices, same threads and precision), so
every step reports its operations, the operations per second it reached and the fraction of
that ceiling. One JSON line per figure on stdout, each naming the machine.

Settings: classifier in train mode (drop path 0.1, 11 classes, soft-target cross-entropy);
pretraining with the published dual masks (80/800 video and 24/128 audio tokens visible, 400 and
64 decoded), loss = two masked MSEs + 0.0025·HCMCL.

    .venv/bin/python benchmarks/bench_model.py --scales base --batch-sizes 2 4 --rounds 2
    .venv/bin/python benchmarks/bench_model.py --scales tiny --impls ours --precisions bf16
    python3 benchmarks/bench_model.py --device cuda --scales base --threads 16   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

IMPLS = ("ours", "published", "compiled")
PRECISIONS = ("fp32", "bf16")


def machine(device: str, threads: int) -> dict:
    """What the figures were measured on."""
    import torch

    from avfmae.machine import cpu_has_bf16_matrix_units, cpu_model, vector_isa

    info = {"cpu": cpu_model(), "vector_isa": vector_isa(), "amx": cpu_has_bf16_matrix_units(),
            "threads": threads,
            "torch": torch.__version__, "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def count_gflop(step: Callable[[], None]) -> float:
    """Floating-point operations of one call of ``step``, in GFLOP (matrix products,
    convolutions and attention; the CPU SDPA kernels get the standard SDPA formulas)."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    formulas = flop_counter.flop_registry
    if aten._scaled_dot_product_flash_attention_for_cpu not in formulas:

        def forward(q, k, v, *args, out_shape=None, **kwargs):
            return flop_counter.sdpa_flop_count(q, k, v)

        def backward(grad, q, k, v, *args, out_shape=None, **kwargs):
            return flop_counter.sdpa_backward_flop_count(grad, q, k, v)

        flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)(
            forward)
        flop_counter.register_flop_formula(
            aten._scaled_dot_product_flash_attention_for_cpu_backward)(backward)
    with flop_counter.FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def masks(batch: int, seed: int = 0):
    """The published pretraining masks at the base geometry: (video enc, audio enc, video dec,
    audio dec), True = masked."""
    import torch

    g = torch.Generator().manual_seed(seed)
    video = torch.ones(batch, 8, 100, dtype=torch.bool)
    video_dec = torch.ones(batch, 800, dtype=torch.bool)
    audio = torch.ones(batch, 128, dtype=torch.bool)
    audio_dec = torch.ones(batch, 128, dtype=torch.bool)
    for b in range(batch):
        video[b, :, torch.randperm(100, generator=g)[:10]] = False
        video_dec[b, torch.randperm(800, generator=g)[:400]] = False
        audio[b, torch.randperm(128, generator=g)[:24]] = False
        audio_dec[b, torch.randperm(128, generator=g)[:64]] = False
    return video.flatten(1), audio, video_dec, audio_dec


def build_steps(model_kind: str, scale: str, batch: int, device: str, bf16: bool,
                compiled: bool = False) -> tuple[Callable[[], None], Callable[[], None], object]:
    """(training step, inference step, model) for one configuration."""
    import torch
    import torch.nn.functional as F

    from avfmae.models import create_model

    torch.manual_seed(0)
    video = torch.randn(batch, 3, 16, 160, 160, device=device)
    audio = torch.randn(batch, 1, 256, 128, device=device)
    if model_kind == "classifier":
        model = create_model(scale, num_classes=11).to(device)
        target = torch.full((batch, 11), 0.1 / 11, device=device)
        target[:, 0] += 0.9

        def forward():
            return model(video, audio)

        def loss_fn(logits):
            return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
    else:
        model = create_model(scale, pretrain=True, partition="rank").to(device)
        index = model.index_masks(*(m.to(device) for m in masks(batch)))
        labels = torch.arange(batch, device=device)

        def forward():
            return model.forward_indexed(video, audio, index)

        def loss_fn(out):
            loss = 0.0
            for recon, mask in ((out.video_recon, out.video_loss_mask),
                                (out.audio_recon, out.audio_loss_mask)):
                loss = loss + ((recon.float() - 0.5).pow(2).mean(-1) * mask).sum() / mask.sum()
            hcmcl = sum(0.5 * (F.cross_entropy(l.float(), labels)
                               + F.cross_entropy(l.float().t(), labels))
                        for l in out.logits_per_video)
            return loss + 0.0025 * hcmcl

    run = torch.compile(forward) if compiled else forward
    device_type = torch.device(device).type

    def train_step():
        model.train()
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            out = run()
        loss_fn(out).backward()
        model.zero_grad(set_to_none=True)

    def eval_step():
        model.eval()
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            run()

    return train_step, eval_step, model


def time_steps(step: Callable[[], None], runs: int, warmup: int, device: str) -> list[float]:
    """Seconds per call of ``step`` (the device synchronised around each call)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return times


def measure(model_kind: str, scale: str, batch: int, impl: str, precision: str, runs: int,
            warmup: int, threads: int, device: str = "cpu") -> dict:
    """One configuration: operations, step times and peak memory."""
    import torch
    from published_compute import published_computation

    torch.set_num_threads(threads)
    with contextlib.ExitStack() as stack:
        if impl == "published":
            stack.enter_context(published_computation())
        bf16 = precision == "bf16"
        train_step, eval_step, model = build_steps(model_kind, scale, batch, device, bf16)
        result = {"fwd_bwd_gflop": count_gflop(train_step),
                  "params": sum(p.numel() for p in model.parameters())}
        if impl == "compiled":  # counted uncompiled: the operations are the same
            train_step, eval_step, model = build_steps(model_kind, scale, batch, device, bf16,
                                                       compiled=True)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result["fwd_bwd_s"] = time_steps(train_step, runs, warmup, device)
        result["fwd_s"] = time_steps(eval_step, runs, warmup, device)
    if device == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        result["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def matmul_peak(precision: str, n: int, threads: int, device: str = "cpu", runs: int = 5) -> float:
    """The machine's ``torch.mm`` rate for n×n matrices, in GFLOP/s (best of ``runs``)."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = time_steps(lambda: torch.mm(a, b), runs, 2, device)
    return 2 * n**3 / min(times) / 1e9


def run_child(args: argparse.Namespace, *child: str) -> dict:
    cmd = [sys.executable, __file__, "--child", *child, "--runs", str(args.runs),
           "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--device", args.device, "--peak-n", str(args.peak_n)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def bench(args: argparse.Namespace, model: str, scale: str, batch: int, peaks: dict,
          common: dict) -> None:
    """Every implementation × precision of one configuration, with the same-run ratios."""
    configs = [(i, p) for p in args.precisions for i in args.impls
               if not (i == "compiled" and p != "fp32" and args.device == "cpu")]
    pooled = {c: {"fwd_bwd_s": [], "fwd_s": [], "peak_gib": 0.0} for c in configs}
    for _ in range(args.rounds):
        for impl, precision in configs:
            r = run_child(args, model, scale, str(batch), impl, precision)
            acc = pooled[(impl, precision)]
            acc["fwd_bwd_s"] += r["fwd_bwd_s"]
            acc["fwd_s"] += r["fwd_s"]
            acc["peak_gib"] = max(acc["peak_gib"], r["peak_gib"])
            acc["params"], acc["gflop"] = r["params"], r["fwd_bwd_gflop"]
    key = {"model": model, "scale": scale, "batch": batch}
    for (impl, precision), r in pooled.items():
        best = min(r["fwd_bwd_s"])
        achieved = r["gflop"] / best
        emit(**key, impl=impl, precision=precision, metric="fwd_bwd_s",
             median=round(statistics.median(r["fwd_bwd_s"]), 4), min=round(best, 4),
             runs=len(r["fwd_bwd_s"]), gflop=round(r["gflop"], 1),
             gflop_per_s=round(achieved, 1),
             fraction_of_mm_peak=round(achieved / peaks[precision], 3), **common)
        emit(**key, impl=impl, precision=precision, metric="fwd_s",
             median=round(statistics.median(r["fwd_s"]), 4), min=round(min(r["fwd_s"]), 4),
             **common)
        emit(**key, impl=impl, precision=precision, metric="peak_memory_gib",
             value=round(r["peak_gib"], 3), params=r["params"], **common)
    for precision in args.precisions:
        base = pooled.get(("published", precision))
        for impl in ("ours", "compiled"):
            ours = pooled.get((impl, precision))
            if base and ours:
                emit(**key, impl=impl, precision=precision, metric="fwd_bwd_speedup_vs_published",
                     median=round(statistics.median(base["fwd_bwd_s"])
                                  / statistics.median(ours["fwd_bwd_s"]), 3),
                     of_minima=round(min(base["fwd_bwd_s"]) / min(ours["fwd_bwd_s"]), 3),
                     **common)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--models", nargs="+", default=["classifier", "pretrain"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2])
    parser.add_argument("--impls", nargs="+", default=["ours", "published"], choices=IMPLS)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the configurations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--peak-n", type=int, default=2048, help="torch.mm size for the ceiling")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--peak-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, scale, batch, impl, precision = args.child
        print(json.dumps(measure(model, scale, int(batch), impl, precision, args.runs,
                                 args.warmup, args.threads, args.device)))
        return
    if args.peak_child:
        print(json.dumps(matmul_peak(args.peak_child, args.peak_n, args.threads, args.device)))
        return

    common = {"machine": machine(args.device, args.threads)}
    peaks = {}
    for precision in args.precisions:
        cmd = [sys.executable, __file__, "--peak-child", precision, "--peak-n", str(args.peak_n),
               "--threads", str(args.threads), "--device", args.device]
        peaks[precision] = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                     text=True).stdout.strip().splitlines()[-1])
        emit(metric="mm_peak_gflop_per_s", precision=precision, n=args.peak_n,
             value=round(peaks[precision], 1), **common)
    for model in args.models:
        for scale in args.scales:
            for batch in args.batch_sizes:
                bench(args, model, scale, batch, peaks, common)


if __name__ == "__main__":
    main()
