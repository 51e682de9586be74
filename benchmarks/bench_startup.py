"""Start-up of a pipeline stage's process: from `python` to a built classifier, with and without
timm imported; prints one JSON line per variant.

    python benchmarks/bench_startup.py [--rounds 5]

Every fine-tuning, evaluation and check stage starts a fresh process that imports the stage's
module and builds the model of ``params.yaml`` (a DVC or Snakemake run starts dozens). The model
code does not import timm; ``with_timm`` imports it first: what a stage would pay if the model
code used timm's layers (timm brings torchvision, and torchvision ``torch._dynamo``). The
variants alternate, round by round, so both see the same machine state; the median of the
rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_model import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILD = ("from avfmae.config import load_params; from avfmae.models.build import "
         "build_classifier; import avfmae.eval.evaluate, avfmae.train.finetune; "
         "build_classifier(load_params('params.yaml'), {'synthetic': 6})")
VARIANTS = {"without_timm": BUILD, "with_timm": "import timm; " + BUILD}


def seconds(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    seconds(BUILD)  # fills the page cache
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, code in VARIANTS.items():
            times[name].append(seconds(code))
    for name, values in times.items():
        print(json.dumps({"bench": "startup", "variant": name, "rounds": args.rounds,
                          "median_s": round(statistics.median(values), 3),
                          "all_s": [round(v, 3) for v in values],
                          "machine": machine("cpu", threads=torch.get_num_threads())}))


if __name__ == "__main__":
    main()
