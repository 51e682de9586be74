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

``--decoders torchcodec,decord`` measures instead which library should decode the store's face
clips: the same clips through ClipDataset with each decoder (only the two decoding methods
differ), per worker at the model's input (16 frames, 160²), train and eval view, in interleaved
rounds (the order alternates per round) so that a busy machine slows both alike; one
``decoders`` line per mode and decoder with the median clips/s over rounds (by CPU time of the
whole process and by wall time), the steps' CPU time in the calling thread (a decoder's own
threads are not in it) and whether both decoders return the same frames.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from avfmae.data.clips import ClipDataset, load_store, seed_worker, tune_allocator  # noqa: E402
from bench_model import machine  # noqa: E402


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


class TorchcodecClips(ClipDataset):
    """ClipDataset decoding with torchcodec (one FFmpeg thread: parallelism is across workers)."""

    def _open_video(self, path: str):
        from torchcodec.decoders import VideoDecoder

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1,
                                seek_mode="approximate")

    def _decode(self, reader, indices: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(indices, return_inverse=True)
        return reader.get_frames_at(uniq.tolist()).data.numpy()[inv.reshape(-1)]


class DecordClips(ClipDataset):
    """ClipDataset decoding with decord (one thread, as above)."""

    def _open_video(self, path: str):
        import decord

        return decord.VideoReader(path, num_threads=1)

    def _decode(self, reader, indices: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(indices, return_inverse=True)
        return reader.get_batch(uniq.tolist()).asnumpy()[inv.reshape(-1)]


DECODERS = {"torchcodec": TorchcodecClips, "decord": DecordClips}


def time_samples(ds: ClipDataset, n: int) -> tuple[float, float]:
    """CPU and wall seconds to make samples ``0 … n-1`` (cycling over the clips)."""
    c0, w0 = time.process_time(), time.perf_counter()
    for k in range(n):
        ds[k % len(ds)]
    return time.process_time() - c0, time.perf_counter() - w0


def same_frames(datasets: list[ClipDataset], clips: int) -> bool:
    """Whether every decoder gives the same video tensors for the first ``clips`` clips."""
    first, *others = datasets
    for i in range(min(clips, len(first))):
        ref = first[i]["video"]
        if any(not torch.equal(ref, ds[i]["video"]) for ds in others):
            return False
    return True


def compare_decoders(rows, names: list[str], modes: list[str], samples: int,
                     rounds: int) -> None:
    """Per-worker clips/s of each decoder, interleaved rounds; one line per mode × decoder."""
    for mode in modes:
        datasets = [DECODERS[name](rows, mode, num_frames=16, input_size=160) for name in names]
        for ds in datasets:
            ds[0]  # warm-up (library loading)
        identical = same_frames(datasets, clips=len(rows))
        cpu = {name: [] for name in names}
        wall = {name: [] for name in names}
        for r in range(rounds):
            order = list(zip(names, datasets))
            for name, ds in order if r % 2 == 0 else order[::-1]:
                c, w = time_samples(ds, samples)
                cpu[name].append(c)
                wall[name].append(w)
        for name, ds in zip(names, datasets):
            prof = ds.enable_profiling()
            time_samples(ds, samples)
            _emit(figure="decoders", decoder=name, mode=mode, clips=len(rows),
                  samples=samples, rounds=rounds,
                  windows=ds.num_windows if mode == "eval" else 1, frames=16, input_size=160,
                  workers=0,
                  clips_per_cpu_s=round(samples / statistics.median(cpu[name]), 1),
                  clips_per_wall_s=round(samples / statistics.median(wall[name]), 1),
                  ms_per_clip_calling_thread={
                      k: round(1000 * v / samples, 2) for k, v in prof.items()},
                  same_frames_as_others=identical, machine=machine("cpu", torch.get_num_threads()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--clips", type=int, default=16,
                    help="clips of the store built when there is no --store")
    ap.add_argument("--samples", type=int, default=120, help="samples timed per figure")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default="pretrain,train,eval")
    ap.add_argument("--decoders", default=None,
                    help="compare these decoders (e.g. torchcodec,decord) instead")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per decoder")
    args = ap.parse_args()

    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
        store = build_store(args.clips, tmp)
    rows = load_store(store)
    torch.set_num_threads(1)  # as in a DataLoader worker
    tune_allocator()
    if args.decoders:
        compare_decoders(rows, args.decoders.split(","), args.modes.split(","), args.samples,
                         args.rounds)
    else:
        measure_modes(rows, args.modes.split(","), args.samples, args.workers)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_modes(rows, modes: list[str], samples: int, workers: int) -> None:
    """The ``per_worker`` and ``loader`` figures of each mode."""
    for mode in modes:
        ds = ClipDataset(rows, mode)
        ds[0]  # warm-up (library loading)
        prof = ds.enable_profiling()
        c0, w0 = time.process_time(), time.perf_counter()
        for k in range(samples):
            if k % len(ds) == 0:
                ds.set_epoch(k // len(ds))
            ds[k % len(ds)]
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        total = sum(prof.values())
        _emit(figure="per_worker", mode=mode, samples=samples,
              windows=ds.num_windows if mode == "eval" else 1,
              samples_per_cpu_s=round(samples / cpu, 1),
              samples_per_wall_s=round(samples / wall, 1),
              ms_per_sample={k: round(1000 * v / samples, 2) for k, v in prof.items()},
              share={k: round(v / total, 3) for k, v in prof.items()})
        if workers > 0:
            loader = torch.utils.data.DataLoader(
                ClipDataset(rows, mode), batch_size=8, shuffle=True, num_workers=workers,
                worker_init_fn=seed_worker, persistent_workers=True, drop_last=False)
            n = 0
            it = iter(loader)
            next(it)  # start-up
            w0 = time.perf_counter()
            while n < samples:
                for batch in it:
                    n += len(batch["clip_id"])
                    if n >= samples:
                        break
                else:
                    it = iter(loader)
            wall = time.perf_counter() - w0
            _emit(figure="loader", mode=mode, workers=workers, batch_size=8, samples=n,
                  samples_per_wall_s=round(n / wall, 1),
                  samples_per_wall_s_per_worker=round(n / wall / workers, 1))


if __name__ == "__main__":
    main()
