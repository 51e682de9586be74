"""Face pipelines on real faces: detection rate and alignment error per condition, and speed at
720p; prints one JSON line per figure.

    python benchmarks/bench_faces.py [--frames 50] [--speed-s 4] [--out /tmp/bench_faces]

Pipelines: ``old`` is the Haar cascade without alignment (``detector: haar, align: false``),
``new`` the default (``detector: mtcnn, align: true``). Clips come from
:mod:`avfmae.preprocess.realfaces` (two public-domain photos under nine conditions, three
face-free photos), 640×360 at 25 fps. Figures:

- ``condition``: per pipeline, photo and condition: share of keyframes with the true face
  found, eye error (mean distance of the true eyes in the crop from the template's eyes, over
  the template's inter-ocular distance) and roll error (eye-line angle in the crop, degrees).
- ``face_free``: keyframes with a (false) face on each face-free clip.
- ``summary``: per pipeline, mean detection rate over the moderate conditions and the worst
  clip among them.
- ``speed_720p``: the whole clip job (decode, detect, crop, encode, WAV) on a 1280×720 25 fps
  clip in this process, one thread: media seconds per CPU second (× real time per core) and the
  per-step breakdown.
- ``decode_720p``: decoding the same clip alone (FFmpeg through PyAV, one thread, no frame
  copied out): the ceiling of the whole job's real-time factor on this CPU, since every frame
  of the source has to be decoded.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avfmae.preprocess import realfaces as rf  # noqa: E402
from avfmae.preprocess.clip import ClipJob, process_clip  # noqa: E402
from avfmae.preprocess.faces import template_points  # noqa: E402
from avfmae.preprocess.settings import Settings  # noqa: E402
from avfmae.preprocess.worker import one_thread  # noqa: E402

PIPELINES = {"old": Settings(detector="haar", align=False), "new": Settings()}


def _emit(**kw) -> None:
    print(json.dumps({"bench": "faces", **kw}), flush=True)


def conditions(tmp: Path, n_frames: int) -> None:
    rates: dict[str, list[float]] = {k: [] for k in PIPELINES}
    for name in rf.FACES:
        for cond in rf.CONDITIONS:
            video, truth = rf.make_real_clip(tmp / f"{name}_{cond}.mp4", name, cond,
                                             n_frames=n_frames)
            for pipe, s in PIPELINES.items():
                track, keys, mats, cpu = rf.run_pipeline(video, s)
                sc = rf.score_track(track, keys, mats, truth, template_points(s)[:2])
                if cond in rf.MODERATE:
                    rates[pipe].append(sc["detection_rate"])
                _emit(figure="condition", pipeline=pipe, photo=name, condition=cond,
                      **{k: round(v, 4) for k, v in sc.items()}, track_cpu_s=round(cpu, 4))
    for name in rf.NON_FACES:
        video, _ = rf.make_real_clip(tmp / f"{name}.mp4", name, "frontal", n_frames=n_frames)
        for pipe, s in PIPELINES.items():
            track, keys, _, _ = rf.run_pipeline(video, s)
            _emit(figure="face_free", pipeline=pipe, photo=name, keyframes=len(keys),
                  false_keyframes=0 if track is None else int(track.found.sum()))
    for pipe, r in rates.items():
        _emit(figure="summary", pipeline=pipe, conditions=list(rf.MODERATE),
              mean_detection_rate=round(float(np.mean(r)), 4), worst=round(float(min(r)), 4))


def speed(tmp: Path, seconds: float) -> None:
    frames, _ = rf.render_frames("astronaut", "frontal", frame=(1280, 720),
                                 n_frames=round(25 * seconds))
    video = rf.write_clip(tmp / "720p.mp4", frames)
    del frames
    decode_ceiling(video, seconds)
    for pipe, s in PIPELINES.items():
        s = dataclasses.replace(s)
        job = ClipJob("speed", str(video), "", str(tmp / f"{pipe}.mp4"), str(tmp / f"{pipe}.wav"))
        process_clip(job, s)  # warm-up: library and network loading
        runs = [process_clip(job, s) for _ in range(3)]
        best = min(runs, key=lambda r: r.timing["total"])
        _emit(figure="speed_720p", pipeline=pipe, ok=best.ok, media_s=best.stats["duration_s"],
              cpu_s=best.timing["total"],
              realtime_x_per_core=round(best.stats["duration_s"] / best.timing["total"], 1),
              breakdown_ms={k: round(1000 * v, 1) for k, v in best.timing.items()
                            if k != "total"})


def _decode_cpu_s(video: Path) -> float:
    import av

    start = time.process_time()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        for _ in container.decode(stream):
            pass
    return time.process_time() - start


def decode_ceiling(video: Path, media_s: float) -> None:
    cpu = min(_decode_cpu_s(video) for _ in range(4))
    _emit(figure="decode_720p", media_s=media_s, cpu_s=round(cpu, 5),
          realtime_x_per_core=round(media_s / cpu, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=50, help="frames per condition clip")
    ap.add_argument("--speed-s", type=float, default=4.0, help="length of the 720p clip")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(args.out or tempfile.mkdtemp(prefix="bench_faces_"))
    tmp.mkdir(parents=True, exist_ok=True)
    one_thread()
    conditions(tmp, args.frames)
    speed(tmp, args.speed_s)
    if args.out is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
