"""Muxing rendered frames and audio into bit-exact H.264/AAC MP4 files with the ffmpeg CLI.

Frames are converted to YUV 4:2:0 (BT.601, limited range, as ffmpeg's own conversion) and staged
with a 16-bit WAV in a temporary folder; one ffmpeg process then encodes a whole batch of clips,
one independent output file per clip (ffmpeg's start-up costs as much as encoding a clip). Every
output has its own encoder instance with fixed settings, single-threaded x264 and bit-exact
muxing, so a file's bytes depend only on its frames and samples (and the ffmpeg/x264 build),
never on the batch it was encoded in, the thread count, the time or the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

__all__ = ["FFmpegError", "ClipMedia", "ffmpeg_binary", "stage_clip", "encode_batch",
           "encode_mp4"]

VIDEO_ARGS = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
              "-profile:v", "high", "-threads", "1",
              "-x264-params", "threads=1:lookahead-threads=1")
AUDIO_ARGS = ("-c:a", "aac", "-b:a", "64k", "-ac", "1")
BITEXACT_ARGS = ("-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                 "-map_metadata", "-1", "-map_chapters", "-1")


class FFmpegError(RuntimeError):
    """ffmpeg is missing or failed; the message carries its stderr."""


def ffmpeg_binary() -> str:
    """Path of the ffmpeg CLI, or a clear error saying how to install it."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise FFmpegError(
            "ffmpeg not found on PATH; install it (Debian/Ubuntu: apt-get install ffmpeg, "
            "conda: conda install -c conda-forge ffmpeg)"
        )
    return path


@dataclass(frozen=True)
class ClipMedia:
    """A clip staged for encoding: raw YUV 4:2:0 frames, a WAV, and the MP4 to write."""

    video: Path
    audio: Path
    out: Path


def stage_clip(frames: Iterable[np.ndarray], audio: np.ndarray, sample_rate: int,
               folder: Path, out: Path, index: int = 0) -> ClipMedia:
    """Write RGB ``frames`` ((H, W, 3) uint8) and mono float ``audio`` into ``folder``."""
    folder = Path(folder)
    stem = f"clip{index:04d}"
    video, wav = folder / f"{stem}.yuv", folder / f"{stem}.wav"
    with open(video, "wb") as fh:
        for frame in frames:
            fh.write(cv2.cvtColor(np.ascontiguousarray(frame, np.uint8),
                                  cv2.COLOR_RGB2YUV_I420).tobytes())
    sf.write(wav, np.asarray(audio, np.float32), sample_rate, subtype="PCM_16")
    return ClipMedia(video, wav, Path(out))


def encode_batch(clips: Sequence[ClipMedia], *, size: int, fps: int, sample_rate: int) -> None:
    """Encode staged clips with one ffmpeg process; each MP4 appears only when all are done.

    Outputs are written as ``*.part`` and renamed into place after ffmpeg succeeds.
    """
    if not clips:
        return
    cmd = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    for clip in clips:
        cmd += ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{size}x{size}",
                "-framerate", str(fps), "-i", str(clip.video), "-i", str(clip.audio)]
    parts = []
    for i, clip in enumerate(clips):
        part = clip.out.with_name(clip.out.name + ".part")
        parts.append(part)
        cmd += ["-map", f"{2 * i}:v:0", "-map", f"{2 * i + 1}:a:0",
                *VIDEO_ARGS, "-r", str(fps), "-g", str(2 * fps),
                *AUDIO_ARGS, "-ar", str(sample_rate),
                *BITEXACT_ARGS, "-movflags", "+faststart", "-f", "mp4", str(part)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        for part in parts:
            part.unlink(missing_ok=True)
        msg = proc.stderr.decode(errors="replace").strip()
        names = ", ".join(c.out.name for c in clips)
        raise FFmpegError(f"ffmpeg failed ({proc.returncode}) encoding {names}: {msg}")
    for part, clip in zip(parts, clips):
        os.replace(part, clip.out)


def encode_mp4(frames: Iterable[np.ndarray], audio: np.ndarray, *, size: int, fps: int,
               sample_rate: int, out: Path) -> None:
    """Encode one clip (RGB ``frames`` and mono float ``audio``) into ``out``, atomically."""
    with tempfile.TemporaryDirectory(prefix="avfmae-syn-") as tmp:
        clip = stage_clip(frames, audio, sample_rate, Path(tmp), out)
        encode_batch([clip], size=size, fps=fps, sample_rate=sample_rate)
