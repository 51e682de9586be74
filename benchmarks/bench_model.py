"""Speed and memory of the AVF-MAE++ models on the CPU: forward and forward+backward time per
step and peak RSS, for the classifier and the pretraining model at each scale.

The variants below are measured in the same run, each configuration in a fresh process (so the
peak RSS is that configuration's own):

* ``ours``      — the library as is: SDPA, and the folded LG cross-attentions;
* ``unfolded``  — SDPA, with the LG cross-attentions computed the plain way;
* ``naive``     — ``softmax(QKᵀ/√d)V`` written out, LG cross-attentions unfolded (the published
  code's way of computing attention);
* ``compiled``  — ``ours`` under ``torch.compile`` (fp32; the warm-up step pays the compilation);
* ``bf16``      — ``ours`` under bf16 autocast (``finetune.amp``/``pretrain.amp: bf16``), which
  is not the fp32 of the published baselines: reported beside them, not instead of them.

The first three run by default; ask for the others with ``--variants``.

Every figure is one JSON line on stdout: times per step (median and minimum over ``--runs``
steps after ``--warmup``; with ``--rounds`` > 1 the variants alternate and runs are pooled),
peak RSS, and the floating-point operations of one training step. On a shared machine the
minima and the operation counts are the figures to trust; speedups are given for both.

Settings mirror the published baselines (reference README §7): fp32, 2 threads
(``--threads``), classifier in train mode with drop path 0.1, soft-target cross-entropy (label
smoothing 0.1), 11 classes; pretraining in train mode with dual masks (80/800 video and 24/128
audio visible, 400 and 64 decoded), loss = two masked MSEs + 0.0025·HCMCL. On an oversubscribed
machine, 2 threads stall at every parallel region; ``--threads 1`` gives steadier relative
figures.

    .venv/bin/python benchmarks/bench_model.py                       # tiny, small, base
    .venv/bin/python benchmarks/bench_model.py --scales base --batch-sizes 1 2 --rounds 3
    .venv/bin/python benchmarks/bench_model.py --scales base --variants ours naive bf16 compiled
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

# Published code on this machine kind, fp32, 2 threads, fwd+bwd seconds (reference README §7):
# (model, scale, batch) → (median low, median high, peak RSS GiB or None).
PUBLISHED = {
    ("classifier", "base", 1): (1.96, 2.28, (2.5, 2.9)),
    ("classifier", "base", 2): (3.32, 3.92, None),
    ("pretrain", "base", 1): (1.04, 1.31, (2.2, 2.6)),
    ("pretrain", "base", 2): (1.48, 1.69, None),
    ("pretrain", "base", 4): (2.63, 3.03, None),
}
VARIANTS = ("ours", "unfolded", "naive", "compiled", "bf16")
DEFAULT_VARIANTS = VARIANTS[:3]


def naive_attention(q, k, v, scale=None):
    """``softmax(q kᵀ · scale) v`` written out (materialises the attention matrix)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return (q @ k.transpose(-2, -1) * scale).softmax(dim=-1) @ v


def apply_variant(variant: str) -> None:
    from avfmae.models import attention

    if variant in ("unfolded", "naive"):
        attention.Attention.forward_few_keys = attention.Attention.forward
        attention.Attention.forward_few_queries = attention.Attention.forward
    if variant == "naive":
        attention.scaled_dot_product_attention = naive_attention


def count_gflop(step) -> float:
    """Floating-point operations of one call of ``step`` (matmuls, convolutions and attention;
    the CPU SDPA kernels are registered with the standard SDPA formulas)."""
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


def measure(
    model_kind: str, scale: str, batch: int, variant: str, runs: int, warmup: int, threads: int
) -> dict:
    """Run in the child process: build, warm up, time, report."""
    import torch
    import torch.nn.functional as F

    from avfmae.models import create_model

    torch.set_num_threads(threads)
    apply_variant(variant)
    torch.manual_seed(0)
    video, audio = torch.randn(batch, 3, 16, 160, 160), torch.randn(batch, 1, 256, 128)
    if model_kind == "classifier":
        model = create_model(scale, num_classes=11)
        target = torch.full((batch, 11), 0.1 / 11)
        target[:, 0] += 0.9

        def forward():
            return model(video, audio)

        def loss_fn(logits):
            return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    else:
        model = create_model(scale, pretrain=True, partition="rank")
        index = model.index_masks(*masks(batch))
        labels = torch.arange(batch)

        def forward():
            return model.forward_indexed(video, audio, index)

        def loss_fn(out):
            loss = 0.0
            for recon, mask in ((out.video_recon, out.video_loss_mask),
                                (out.audio_recon, out.audio_loss_mask)):
                loss = loss + ((recon - 0.5).pow(2).mean(-1) * mask).sum() / mask.sum()
            hcmcl = sum(0.5 * (F.cross_entropy(l, labels) + F.cross_entropy(l.t(), labels))
                        for l in out.logits_per_video)
            return loss + 0.0025 * hcmcl

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")

    def steps(fwd):
        def train_step():
            model.train()
            with autocast():
                out = fwd()
            loss_fn(out).backward()
            model.zero_grad(set_to_none=True)

        def eval_step():
            model.eval()
            with torch.no_grad(), autocast():
                fwd()

        return train_step, eval_step

    train_step, eval_step = steps(forward)
    result = {"fwd_bwd_gflop": count_gflop(train_step)}
    if variant == "compiled":
        train_step, eval_step = steps(torch.compile(forward))
    for name, step in (("fwd_bwd_s", train_step), ("fwd_s", eval_step)):
        for _ in range(warmup):
            step()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        result[name] = times
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["params"] = sum(p.numel() for p in model.parameters())
    return result


def run_child(args: argparse.Namespace, model: str, scale: str, batch: int, variant: str) -> dict:
    cmd = [
        sys.executable, __file__, "--child", model, scale, str(batch), variant,
        "--runs", str(args.runs), "--warmup", str(args.warmup), "--threads", str(args.threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def bench(args: argparse.Namespace, model: str, scale: str, batch: int, common: dict) -> None:
    """Measure every variant of one configuration and print its figures."""
    pooled = {v: {"fwd_bwd_s": [], "fwd_s": [], "peak_rss_gib": 0.0} for v in args.variants}
    for _ in range(args.rounds):
        for variant in args.variants:
            r = run_child(args, model, scale, batch, variant)
            acc = pooled[variant]
            acc["fwd_bwd_s"] += r["fwd_bwd_s"]
            acc["fwd_s"] += r["fwd_s"]
            acc["peak_rss_gib"] = max(acc["peak_rss_gib"], r["peak_rss_gib"])
            acc["params"] = r["params"]
            acc["fwd_bwd_gflop"] = r["fwd_bwd_gflop"]
    key = {"model": model, "scale": scale, "batch": batch}
    for variant, r in pooled.items():
        precision = {"precision": "bf16 autocast" if variant == "bf16" else "fp32"}
        for metric in ("fwd_s", "fwd_bwd_s"):
            emit(**key, variant=variant, metric=metric, runs=len(r[metric]),
                 median=round(statistics.median(r[metric]), 4), min=round(min(r[metric]), 4),
                 **precision, **common)
        emit(**key, variant=variant, metric="peak_rss_gib", value=round(r["peak_rss_gib"], 3),
             params=r["params"], **common)
        emit(**key, variant=variant, metric="fwd_bwd_gflop", value=round(r["fwd_bwd_gflop"], 2),
             **common)
    for other in ("unfolded", "naive"):
        if other in pooled and "ours" in pooled:
            times, ours = pooled[other]["fwd_bwd_s"], pooled["ours"]["fwd_bwd_s"]
            emit(**key, metric=f"fwd_bwd_speedup_vs_{other}",
                 value=round(statistics.median(times) / statistics.median(ours), 3),
                 value_of_minima=round(min(times) / min(ours), 3), **common)
    if (model, scale, batch) not in PUBLISHED:
        return
    low, high, rss = PUBLISHED[(model, scale, batch)]
    for variant in ("ours", "compiled", "bf16"):
        if variant in pooled:
            t = statistics.median(pooled[variant]["fwd_bwd_s"])
            emit(**key, variant=variant, metric="fwd_bwd_speedup_vs_published_readme",
                 value=[round(low / t, 3), round(high / t, 3)], published_median_s=[low, high],
                 published_peak_rss_gib=rss,
                 peak_rss_gib=round(pooled[variant]["peak_rss_gib"], 3),
                 **{**common, "note": "published figures from reference README §7 (same machine "
                                       "kind, another time, fp32): indicative only"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--models", nargs="+", default=["classifier", "pretrain"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2])
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=VARIANTS)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the variants this often")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "SCALE", "BATCH", "VARIANT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, scale, batch, variant = args.child
        print(json.dumps(measure(model, scale, int(batch), variant, args.runs, args.warmup,
                                 args.threads)))
        return

    import torch

    common = {"threads": args.threads, "torch": torch.__version__,
              "note": "shared CPU: compare only figures from the same run"}
    for model in args.models:
        for scale in args.scales:
            for batch in args.batch_sizes:
                bench(args, model, scale, batch, common)


if __name__ == "__main__":
    main()
