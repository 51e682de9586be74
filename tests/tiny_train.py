"""A tiny audio-visual training loop built from avfmae.train pieces (test helper, not library).

Run as ``python tests/tiny_train.py --out DIR`` or under ``torchrun``. It trains a few Linear
layers on synthetic tensors with the resumable sampler, the gathered contrastive loss, a masked
reconstruction loss (global denominator) and cross-entropy, the
warm-up/cosine schedule, periodic and preemption checkpoints, then exports the final weights
and evaluates with gathered predictions. Writes (rank 0): ``losses.jsonl`` (one line per step),
``progress`` (last step), ``metrics.json``, ``final.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avfmae.eval.metrics import classification_metrics  # noqa: E402
from avfmae import masking  # noqa: E402
from avfmae.train import amp, checkpoint, distributed, losses, optim, seeding  # noqa: E402

N_TRAIN, N_EVAL, DV, DA, K = 48, 13, 16, 12, 3


def synthetic(n: int, seed: int) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(K, (n,), generator=g)
    xv = torch.randn(n, DV, generator=g) + y[:, None].float()
    xa = torch.randn(n, DA, generator=g) - y[:, None].float()
    return torch.utils.data.TensorDataset(torch.arange(n), xv, xa, y)


class TinyAV(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.v1, self.v2 = nn.Linear(DV, 32), nn.Linear(32, 8)
        self.a1, self.a2 = nn.Linear(DA, 32), nn.Linear(32, 8)
        self.head, self.drop = nn.Linear(16, K), nn.Dropout(dropout)
        self.dec = nn.Linear(16, DV)

    def forward(self, xv, xa):
        hv, ha = torch.relu(self.v1(xv)), torch.relu(self.a1(xa))
        zv, za = self.v2(self.drop(hv)), self.a2(self.drop(ha))
        z = torch.cat([zv, za], -1)
        recon = self.dec(z).reshape(-1, 4, DV // 4)  # 4 "tokens" of 4 values
        return [hv, zv], [ha, za], self.head(z), recon


def sample_masks(epoch: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample masks keyed by (epoch, index): decoder 3 of 4 decoded, encoder ~half hidden
    (a count that varies across samples and ranks)."""
    enc, dec = [], []
    for i in idx.tolist():
        g = seeding.make_generator(5, epoch, i)
        dec.append(masking.random_mask(1, 4, 0.25, generator=g)[0])
        enc.append(torch.rand(4, generator=g) < 0.5)
    return torch.stack(enc), torch.stack(dec)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="per-process batch")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--global-rng", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (NCCL under torchrun)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = distributed.init_distributed(device=args.device)
    seeding.seed_everything(1234 + info.rank)
    model = TinyAV(args.dropout).to(info.device)
    ddp = nn.parallel.DistributedDataParallel(model) if info.world_size > 1 else model
    data = synthetic(N_TRAIN, 0)
    sampler = distributed.ResumableDistributedSampler(data, seed=7)
    loader = distributed.ResumableLoader(data, sampler=sampler, batch_size=args.batch, seed=7)
    steps_per_epoch = sampler.num_samples // args.batch
    peak = optim.scaled_lr(0.5, args.batch * info.world_size)
    opt = optim.build_optimizer(model, lr=peak, weight_decay=0.05, betas=(0.9, 0.95))
    sched = optim.WarmupCosineSchedule(opt, peak_lr=peak, min_lr=1e-4,
                                       warmup_steps=steps_per_epoch,
                                       total_steps=args.epochs * steps_per_epoch)
    prec = amp.Precision.create("auto", info.device)
    ckpts = checkpoint.CheckpointManager(args.out / "ckpt", every_steps=args.every, keep=2)
    state = {"model": model, "optimizer": opt, "scheduler": sched, "scaler": prec,
             "sampler": sampler}
    resumed = ckpts.resume(**state)
    step = resumed["step"] if resumed else 0
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "losses.jsonl"
    with checkpoint.Preemption() as pre:
        for epoch in range(sampler.epoch, args.epochs):
            loader.set_epoch(epoch)
            for idx, xv, xa, y in loader:
                xv, xa, y = (distributed.to_device(t, info.device) for t in (xv, xa, y))
                if args.global_rng:  # per-rank global RNGs: exercises their checkpointing
                    noise = torch.from_numpy(np.random.standard_normal(tuple(xv.shape)))
                    xv = xv + 0.01 * noise.float().to(xv.device)
                    xa = xa * (1.0 + 0.01 * random.random())
                else:  # keyed by (seed, epoch, sample): the same whatever the world size
                    xv = xv + 0.01 * torch.stack([torch.randn(
                        DV, generator=seeding.make_generator(3, epoch, int(i))) for i in idx]
                    ).to(info.device)
                enc, dec = (m.to(info.device) for m in sample_masks(epoch, idx))
                with prec.autocast():
                    lv, la, logits, recon = ddp(xv, xa)
                    loss = (losses.hierarchical_contrastive_loss(lv, la, 0.1)
                            + nn.functional.cross_entropy(logits, y)
                            + losses.reconstruction_loss(losses.select_decoded(recon, dec),
                                                         xv.reshape(-1, 4, DV // 4), dec, enc))
                amp.optimizer_step(loss, opt, prec, clip_grad=5.0)
                sched.step()
                sampler.advance(len(y))
                step += 1
                mean_loss = distributed.all_reduce_mean(loss).item()
                if info.is_main:
                    with log.open("a") as f:
                        f.write(json.dumps({"step": step, "loss": mean_loss}) + "\n")
                    (args.out / "progress").write_text(str(step))
                time.sleep(args.sleep)
                if pre.should_stop():
                    ckpts.save(step, epoch=epoch, **state)
                    raise SystemExit(checkpoint.EXIT_PREEMPTED)
                if ckpts.due(step):
                    ckpts.save(step, epoch=epoch, **state)
    checkpoint.export_weights(model, args.out / "final.safetensors")
    evaluate(model, args.out, info)
    distributed.cleanup_distributed()


def evaluate(model: nn.Module, out: Path, info: distributed.DistInfo) -> None:
    data = synthetic(N_EVAL, 1)
    loader = torch.utils.data.DataLoader(data, batch_size=4,
                                         sampler=distributed.ShardSampler(data))
    idx, preds, labels = [], [], []
    model.eval()
    with torch.no_grad():
        for i, xv, xa, y in loader:
            logits = model(xv.to(info.device), xa.to(info.device))[2]
            idx.append(i), preds.append(logits.argmax(-1).cpu()), labels.append(y)
    index, pred, true = distributed.gather_predictions(
        torch.cat(preds), torch.cat(labels), index=torch.cat(idx))
    if info.is_main:
        m = classification_metrics(true, pred, num_classes=K)
        m.update(index=index.tolist(), pred=pred.tolist(), world_size=info.world_size)
        (out / "metrics.json").write_text(json.dumps(m))


def run_in_process(out: Path, *args: str) -> None:
    """Run :func:`main` in the calling process (torch already imported: much faster than a
    child process); restores the torch thread count afterwards."""
    threads = torch.get_num_threads()
    try:
        main(["--out", str(out), *args])
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
