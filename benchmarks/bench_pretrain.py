"""Pretraining step throughput and peak memory per scale (one JSON line per scale).

A full optimisation step of the real pretraining objective — per-sample dual masks, forward,
reconstruction + contrastive losses and the default second masked view, backward, AdamW — on
random inputs of the real geometry (data loading excluded; see bench_loader.py for that). Each
scale runs in its own process so its peak RSS is its own. ``--modalities`` compares the
audio-visual model with the video-only and audio-only ones (``pretrain.modality``), alternating
them ``--rounds`` times.

    python benchmarks/bench_pretrain.py                      # tiny small base, fp32 CPU
    python benchmarks/bench_pretrain.py --scales base --batch 2 --steps 5
    python benchmarks/bench_pretrain.py --scales tiny --modalities av video audio --rounds 3
    python benchmarks/bench_pretrain.py --scales tiny --modalities av video audio --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_BATCH = {"tiny": 8, "small": 4, "base": 2, "large": 2, "huge": 1}


def run_one(scale: str, batch: int, steps: int, threads: int, modality: str = "av",
            device: str = "cpu") -> dict:
    import torch

    from avfmae.config import Params
    from avfmae.masking import dual_masks, video_encoder_mask
    from avfmae.models import create_model
    from avfmae.train.losses import pretraining_losses
    from avfmae.train.optim import build_optimizer
    from avfmae.train.pretrain import uses_second_view
    from avfmae.train.seeding import make_generator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Params().pretrain
    model = create_model(scale, pretrain=True, modality=modality).to(device)
    model.train()
    opt = build_optimizer(model, lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))
    video = torch.randn(batch, 3, 16, 160, 160, device=device) if model.has("video") else None
    audio = torch.randn(batch, 1, 256, 128, device=device) if model.has("audio") else None
    second_view = uses_second_view(cfg, model)

    def view_masks(step: int) -> torch.Tensor | None:
        return video_encoder_mask(batch, cfg, generator=make_generator(1, step)).to(device) \
            if second_view else None

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for step in range(steps + 1):
        masks = {k: v.to(device) for k, v in
                 dual_masks(batch, cfg, generator=make_generator(0, step)).items()}
        sync()
        start = time.perf_counter()
        out = model(video, audio, masks["encoder_mask_video"], masks["encoder_mask_audio"],
                    masks["decoder_mask_video"], masks["decoder_mask_audio"],
                    video_view_mask=view_masks(step))
        loss = pretraining_losses(
            video, audio, masks, out.video_recon, out.audio_recon, out.video_embeddings,
            out.audio_embeddings, video_view=out.video_view_embedding,
            view_weight=cfg.view_contrastive_weight,
            view_temperature=cfg.view_contrastive_temperature)["loss_total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if step:  # the first step warms up allocator and kernels
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "benchmark": "pretrain_step", "scale": scale, "modality": modality, "batch": batch,
        "threads": threads, "dtype": "float32", "device": device, "steps": steps,
        "second_view": second_view,
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "step_s_median": round(median, 4), "step_s_min": round(min(times), 4),
        "clips_per_s": round(batch / median, 2),
        "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["tiny", "small", "base"])
    ap.add_argument("--batch", type=int, default=None, help="default: per-scale table")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modalities", nargs="+", default=["av"], choices=["av", "video", "audio"])
    ap.add_argument("--rounds", type=int, default=1, help="alternate the modalities this often")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.scales[0], args.batch, args.steps, args.threads,
                                 args.modalities[0], args.device)), flush=True)
        return
    for scale in args.scales:
        batch = args.batch or DEFAULT_BATCH[scale]
        for _ in range(args.rounds):
            for modality in args.modalities:
                subprocess.run([sys.executable, __file__, "--one", "--scales", scale, "--batch",
                                str(batch), "--steps", str(args.steps), "--threads",
                                str(args.threads), "--modalities", modality, "--device",
                                args.device], check=True)


if __name__ == "__main__":
    main()
