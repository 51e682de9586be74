"""Preprocessing speed and face-detection rate; prints one JSON line per figure.

    python benchmarks/bench_preprocess.py [--clips 24] [--source cartoon|synthetic]
                                          [--workers 0] [--out /tmp/bench_pre]

Source clips are 3 s, 224×224, 25 fps with a moving face: ``cartoon`` draws them here
(``avfmae.preprocess.testclips``), ``synthetic`` renders them with the project's synthetic
dataset generator. Figures:

- ``per_core``: clips processed one after another in this process; CPU seconds per clip, media
  seconds per CPU second (× real time per core) and the per-step breakdown.
- ``face_rate``: share of keyframes with the face found, over clips.
- ``stage``: the whole stage (``preprocess_manifest``) with a worker pool: wall clips/s and media
  seconds per wall second (includes process start-up).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avfmae.config import PreprocessConfig  # noqa: E402
from avfmae.preprocess.clip import ClipJob, process_clip  # noqa: E402
from avfmae.preprocess.settings import Settings  # noqa: E402
from avfmae.preprocess.worker import one_thread  # noqa: E402


def _emit(**kw) -> None:
    print(json.dumps({"bench": "preprocess", **kw}), flush=True)


def make_sources(kind: str, n: int, where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if kind == "cartoon":
        from avfmae.preprocess.testclips import make_clip

        rng = np.random.default_rng(0)
        return [
            make_clip(where / f"c{i:03d}.mp4", duration_s=3.0, motion_px=float(rng.uniform(2, 8)),
                      face=(rng.uniform(0.4, 0.6), rng.uniform(0.42, 0.58), rng.uniform(0.28, 0.4)),
                      background=tuple(int(x) for x in rng.integers(40, 200, 3)), noise_seed=i)
            for i in range(n)
        ]
    from avfmae.config import SyntheticConfig
    from avfmae.data.synthetic import generate

    per = max(1, -(-n // 8))
    cfg = SyntheticConfig(n_speakers=2, n_pool_speakers=max(1, -(-n // per)),
                          clips_per_class=1, pool_clips_per_speaker=per)
    out = generate(cfg, where / "synthetic", progress=False)
    return sorted(out.rglob("*.mp4"))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--source", choices=["cartoon", "synthetic"], default="cartoon")
    ap.add_argument("--workers", type=int, default=0, help="pool size of the stage run (0 = all)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    tmp = Path(args.out or tempfile.mkdtemp(prefix="bench_pre_"))
    srcs = make_sources(args.source, args.clips, tmp / "src")
    cfg = PreprocessConfig()
    s = Settings.from_config(cfg)
    one_thread()

    # per core: one clip after another in this process (warm-up first: library loading)
    work = tmp / "inline"
    (work / "f").mkdir(parents=True, exist_ok=True)
    process_clip(ClipJob("warm", str(srcs[0]), "", str(work / "f/w.mp4"), str(work / "f/w.wav")), s)
    results = []
    t0 = time.perf_counter()
    for i, p in enumerate(srcs):
        r = process_clip(ClipJob(f"c{i}", str(p), "", str(work / f"f/{i}.mp4"),
                                 str(work / f"f/{i}.wav")), s)
        results.append(r)
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.ok]
    cpu = sum(r.timing["total"] for r in ok)
    media = sum(r.stats["duration_s"] for r in ok)
    steps = sorted({k for r in ok for k in r.timing if k != "total"})
    _emit(figure="per_core", source=args.source, clips=len(ok), rejected=len(results) - len(ok),
          cpu_s_per_clip=round(cpu / len(ok), 4), clips_per_cpu_s=round(len(ok) / cpu, 2),
          realtime_x_per_core=round(media / cpu, 1), wall_s=round(wall, 2),
          breakdown_ms={k: round(1000 * np.mean([r.timing.get(k, 0.0) for r in ok]), 2)
                        for k in steps})
    rates = np.array([r.stats["face_rate"] for r in ok])
    _emit(figure="face_rate", source=args.source, clips=len(ok), mean=round(float(rates.mean()), 4),
          min=round(float(rates.min()), 4), share_ge_095=round(float((rates >= 0.95).mean()), 4))

    # the whole stage on a pool
    m = tmp / "manifest.csv"
    pd.DataFrame({"clip_id": [f"c{i:03d}" for i in range(len(srcs))],
                  "video": [str(p) for p in srcs], "audio": ""}).to_csv(m, index=False)
    out = tmp / "store"
    shutil.rmtree(out, ignore_errors=True)
    from avfmae.preprocess import preprocess_manifest, worker_count

    pcfg = dataclasses.replace(cfg, workers=args.workers, max_reject_fraction=1.0)
    t0 = time.perf_counter()
    preprocess_manifest(m, out, pcfg, progress=False)
    wall = time.perf_counter() - t0
    man = pd.read_csv(out / "manifest.csv")
    n_workers = min(worker_count(args.workers), len(srcs))
    _emit(figure="stage", source=args.source, clips=len(man), workers=n_workers,
          wall_s=round(wall, 2), clips_per_s=round(len(man) / wall, 2),
          media_s_per_wall_s=round(float(man["duration_s"].sum()) / wall, 1))
    if args.out is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
