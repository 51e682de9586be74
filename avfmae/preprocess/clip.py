"""One source clip → one face clip (mp4) and one WAV, or a reject reason.

:func:`process_clip` is what a worker runs. It opens the video (probing for truncation), reads
the aligned audio span first (cheap, and it rejects clips without usable audio before any video
work), decodes the keyframes and tracks the face, then crops the frames (kept in 4:2:0 planes)
in chunks and streams them into the encoder. Outputs are written under temporary names and
renamed into place only when complete, so a killed worker never leaves a file that looks
finished.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .faces import crop_frames, crop_params, keyframe_indices, make_detector, track_face
from .media import (
    FaceVideoWriter,
    MediaError,
    frame_times,
    frames_shown_at,
    probe_video,
    read_audio,
    write_wav,
)
from .settings import Settings

__all__ = ["ClipJob", "process_clip", "CHUNK_FRAMES"]

#: frames decoded and cropped at a time (bounds memory for long or large clips)
CHUNK_FRAMES = 64
#: clips whose decoded (I420) frames fit in this many bytes are decoded once and kept in memory,
#: longer ones are decoded twice; one worker runs per core, and 256 MiB holds 7 s of 1280×720
CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class ClipJob:
    clip_id: str
    video: str  # source video path
    audio: str  # separate audio path, or "" when the audio track is in the video
    face_out: str  # final paths
    wav_out: str


@dataclass
class ClipResult:
    clip_id: str
    ok: bool
    reason: str = ""
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)


def _tmp(path: str) -> str:
    p = Path(path)
    return str(p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}"))


def _mean_roll(track) -> float:
    """Mean eye-line angle in degrees (positive: the right eye lower in the image)."""
    if track.points is None:
        return float(np.mean(track.roll))
    d = track.points[:, 1] - track.points[:, 0]
    return float(np.degrees(np.mean(np.arctan2(d[:, 1], d[:, 0]))))


def process_clip(
    job: ClipJob, s: Settings, alive: Callable[[], bool] | None = None
) -> ClipResult:
    """Process one clip; never raises for bad media (returns a reject), only for real bugs.

    ``alive``: when given and it returns False once the clip is encoded (the stage was
    killed), the outputs are discarded instead of being renamed into place.
    """
    t = {"start": time.process_time()}  # CPU seconds of this worker (one thread)
    tmp_face, tmp_wav = _tmp(job.face_out), _tmp(job.wav_out)
    try:
        return _process(job, s, t, tmp_face, tmp_wav, alive)
    except MediaError as err:
        return ClipResult(job.clip_id, False, err.reason, str(err))
    finally:
        for p in (tmp_face, tmp_wav):
            if os.path.exists(p):
                os.unlink(p)


def _lap(t: dict[str, float], name: str) -> None:
    now = time.process_time()
    t[name] = now - t.pop("_last", t["start"])
    t["_last"] = now


def _process(
    job: ClipJob, s: Settings, t: dict, tmp_face: str, tmp_wav: str,
    alive: Callable[[], bool] | None,
) -> ClipResult:
    info = probe_video(job.video)
    times = frame_times(info, s.fps)
    n = len(times)
    _lap(t, "open")

    # audio: same clock as the video when embedded; a separate file starts at the video's start
    if job.audio:
        audio, real = read_audio(job.audio, 0.0, round(n * s.samples_per_frame), s.sample_rate)
    else:
        audio, real = read_audio(job.video, info.begin_s, round(n * s.samples_per_frame),
                                 s.sample_rate)
    audio_s = real / s.sample_rate
    if audio_s < s.min_audio_s:
        raise MediaError(
            "short_audio",
            f"audio covers {audio_s:.2f} s of the clip (< min_audio_s {s.min_audio_s})",
        )
    _lap(t, "audio")

    # pass 1: keyframes → face track (short clips are decoded whole, once; long ones twice)
    keys = keyframe_indices(n, s.detect_every)
    cached = None
    if n * info.width * info.height * 3 // 2 <= CACHE_BYTES:
        cached = list(frames_shown_at(job.video, times, info))
        key_frames = [cached[k] for k in keys]
    else:
        key_frames = list(frames_shown_at(job.video, times[keys], info))
    _lap(t, "decode_keys")
    track = track_face(key_frames, keys, n, make_detector(s))
    face_rate = track.face_rate if track is not None else 0.0
    if track is None or face_rate < s.min_face_rate:
        raise MediaError(
            "no_face",
            f"face found on {face_rate:.0%} of {len(keys)} keyframes (< min_face_rate "
            f"{s.min_face_rate:.0%})",
        )
    mats = crop_params(track, s)
    _lap(t, "detect")

    # pass 2: (decode →) crop → encode, in chunks
    frames = iter(cached) if cached is not None else frames_shown_at(job.video, times, info)
    t_dec = t_crop = 0.0
    with FaceVideoWriter(tmp_face, s.face_size, s.fps, crf=s.crf, preset=s.preset, gop=s.gop,
                         codec=s.codec, pixel_format=s.pixel_format) as writer:
        for lo in range(0, n, CHUNK_FRAMES):
            a = time.process_time()
            chunk = list(itertools.islice(frames, CHUNK_FRAMES))
            b = time.process_time()
            crops = crop_frames(chunk, mats[lo : lo + len(chunk)], s)
            c = time.process_time()
            writer.add(crops)
            t_crop += c - b
            t_dec += b - a
    _lap(t, "encode")
    t["encode"] -= t_dec + t_crop
    t["decode"], t["crop"] = t_dec, t_crop
    write_wav(tmp_wav, audio, s.sample_rate)

    if alive is not None and not alive():
        raise MediaError("orphaned", "the stage process died; outputs discarded")
    os.replace(tmp_face, job.face_out)
    os.replace(tmp_wav, job.wav_out)
    _lap(t, "write")
    t.pop("_last", None)
    t["total"] = time.process_time() - t.pop("start")

    H, W = info.height, info.width
    b = track.boxes
    stats = {
        "n_frames": n,
        "fps": float(s.fps),
        "duration_s": n / s.fps,
        "audio_s": round(audio_s, 4),
        "src_width": W,
        "src_height": H,
        "src_fps": round(info.fps, 4),
        "face_rate": round(face_rate, 4),
        "box_cx": round(float(np.mean(b[:, 0]) / W), 4),
        "box_cy": round(float(np.mean(b[:, 1]) / H), 4),
        "box_size": round(float(np.mean(b[:, 2]) / min(H, W)), 4),
        "box_jitter": round(track.jitter, 4),
        "face_conf": round(track.confidence, 4),
        "face_jump": round(track.max_jump, 4),
        "roll_deg": round(_mean_roll(track), 3),
    }
    return ClipResult(job.clip_id, True, stats=stats, timing={k: round(v, 5) for k, v in t.items()})
