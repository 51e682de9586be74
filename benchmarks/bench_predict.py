"""`avfmae predict` throughput: clips per second from plain videos to predictions (face track,
crop, audio, windows, model), per model scale; prints one JSON line per scale.

    python benchmarks/bench_predict.py [--scales tiny base] [--speakers 2] [--workers 0]

The videos are embedded synthetic clips (3 s, 224², 25 fps; 6 per speaker). The checkpoint is
an untrained classifier of each scale with a real model card: prediction does the same work
whatever the weights are. Each scale is predicted twice and the second, warm run is reported
(the first loads the face detector and fills the page cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import avfmae  # noqa: E402
from avfmae.config import SyntheticConfig, load_params  # noqa: E402
from avfmae.data import registry  # noqa: E402
from avfmae.data.synthetic import generate  # noqa: E402
from avfmae.models.build import build_classifier  # noqa: E402
from avfmae.train.checkpoint import export_weights  # noqa: E402
from avfmae.tasks import Task  # noqa: E402
from avfmae.train.finetune import checkpoint_metadata  # noqa: E402
from bench_model import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def untrained_checkpoint(scale: str, out: Path) -> Path:
    """A classifier of ``scale`` for the embedded dataset's labels, with its model card."""
    params = load_params(REPO / "params.yaml")
    params = dataclasses.replace(params, model=dataclasses.replace(params.model, scale=scale))
    task = Task("synthetic", "CEA", tuple(registry.get("synthetic").labels))
    model = build_classifier(params, {task.dataset: task.outputs})
    return export_weights(model, out, metadata=checkpoint_metadata(params, task, "s3", 1, 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", nargs="+", default=["tiny", "base"])
    ap.add_argument("--speakers", type=int, default=2, help="6 clips per speaker")
    ap.add_argument("--workers", type=int, default=0, help="preprocessing processes, 0 = all")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        videos = generate(SyntheticConfig(n_speakers=args.speakers, n_pool_speakers=0,
                                          pool_clips_per_speaker=0),
                          Path(tmp) / "videos", progress=False) / "labeled"
        n = len(list(videos.rglob("*.mp4")))
        for scale in args.scales:
            ckpt = untrained_checkpoint(scale, Path(tmp) / f"{scale}.safetensors")
            for _ in range(2):
                start = time.perf_counter()
                result = avfmae.predict(videos, ckpt, device="cpu", workers=args.workers,
                                        batch_size=args.batch_size, progress=False)
                wall = time.perf_counter() - start
            ok = int((result.clips["status"] == "ok").sum())
            print(json.dumps({"bench": "predict", "scale": scale, "clips": n, "ok": ok,
                              "clip_s": 3.0, "wall_s": round(wall, 2),
                              "clips_per_s": round(n / wall, 3),
                              "workers": args.workers, "batch_size": args.batch_size,
                              "machine": machine("cpu", threads)}), flush=True)


if __name__ == "__main__":
    main()
