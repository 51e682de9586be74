"""Training-time loader throughput; prints one JSON line per figure.

    python benchmarks/bench_loader.py [--store data/processed/synthetic] [--clips 16]
                                      [--samples 120] [--workers 2]

Without ``--store`` a small clip store is built first (cartoon-face clips through the real
preprocess stage). Figures, per mode (pretrain, train, eval):

- ``per_worker``: samples made one after another in this process, set up like a DataLoader
  worker (one torch/OpenCV thread, tuned allocator): samples/s by CPU time and by wall time,
  and the share of CPU time in opening the video, decoding frames, video transforms, reading
  audio and the filterbank.
- ``loader``: a DataLoader with ``--workers`` workers (batch 8): samples/s by wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avfmae.data.clips import ClipDataset, load_store, seed_worker, tune_allocator  # noqa: E402


def _emit(**kw) -> None:
    print(json.dumps({"bench": "loader", **kw}), flush=True)


def build_store(n: int, where: Path) -> Path:
    import dataclasses

    import numpy as np
    import pandas as pd

    from avfmae.config import PreprocessConfig
    from avfmae.preprocess import preprocess_manifest
    from avfmae.preprocess.testclips import make_clip

    rng = np.random.default_rng(0)
    srcs = [
        make_clip(where / "src" / f"c{i:03d}.mp4", duration_s=3.0, motion_px=4.0,
                  face=(rng.uniform(0.42, 0.58), 0.5, rng.uniform(0.3, 0.38)), noise_seed=i,
                  beep_s=1.0)
        for i in range(n)
    ]
    m = where / "manifest.csv"
    pd.DataFrame({"clip_id": [p.stem for p in srcs], "video": [str(p) for p in srcs],
                  "audio": "", "label": [i % 4 for i in range(n)]}).to_csv(m, index=False)
    cfg = dataclasses.replace(PreprocessConfig(), workers=1)
    return preprocess_manifest(m, where / "store", cfg, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--clips", type=int, default=16,
                    help="clips of the store built when there is no --store")
    ap.add_argument("--samples", type=int, default=120, help="samples timed per figure")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="pretrain,train,eval")
    args = ap.parse_args()

    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
        store = build_store(args.clips, tmp)
    rows = load_store(store)
    torch.set_num_threads(1)  # as in a DataLoader worker
    tune_allocator()
    for mode in args.modes.split(","):
        ds = ClipDataset(rows, mode)
        ds[0]  # warm-up (library loading)
        prof = ds.enable_profiling()
        c0, w0 = time.process_time(), time.perf_counter()
        for k in range(args.samples):
            if k % len(ds) == 0:
                ds.set_epoch(k // len(ds))
            ds[k % len(ds)]
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        total = sum(prof.values())
        _emit(figure="per_worker", mode=mode, samples=args.samples,
              windows=ds.num_windows if mode == "eval" else 1,
              samples_per_cpu_s=round(args.samples / cpu, 1),
              samples_per_wall_s=round(args.samples / wall, 1),
              ms_per_sample={k: round(1000 * v / args.samples, 2) for k, v in prof.items()},
              share={k: round(v / total, 3) for k, v in prof.items()})
        if args.workers > 0:
            loader = torch.utils.data.DataLoader(
                ClipDataset(rows, mode), batch_size=8, shuffle=True, num_workers=args.workers,
                worker_init_fn=seed_worker, persistent_workers=True, drop_last=False)
            n = 0
            it = iter(loader)
            next(it)  # start-up
            w0 = time.perf_counter()
            while n < args.samples:
                for batch in it:
                    n += len(batch["clip_id"])
                    if n >= args.samples:
                        break
                else:
                    it = iter(loader)
            wall = time.perf_counter() - w0
            _emit(figure="loader", mode=mode, workers=args.workers, batch_size=8, samples=n,
                  samples_per_wall_s=round(n / wall, 1),
                  samples_per_wall_s_per_worker=round(n / wall / args.workers, 1))
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
