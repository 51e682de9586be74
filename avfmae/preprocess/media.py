"""Media I/O for preprocessing, in-process through FFmpeg's libraries.

Spawning the ``ffmpeg`` CLI costs 0.1–0.3 s per process on this stack (it links ~200 shared
libraries), more than the whole per-clip budget, so decoding, resampling and encoding run
inside the worker: :func:`probe_video` checks a clip and reads its geometry and clock,
:func:`frames_shown_at` decodes the frames shown at given times, :func:`read_audio` decodes,
down-mixes and resamples the audio of a time span, :class:`FaceVideoWriter` streams frames into
one H.264 mp4 and :func:`write_wav` writes 16-bit PCM.

Frames stay in the decoder's 4:2:0 planes (I420, ``(H * 3 / 2, W)`` uint8): converting a whole
1280×720 frame to RGB costs more than decoding it (docs/speed.md, "Preprocessing"), and only
the face crop and the shrunk regions the detector searches need colour
(:func:`avfmae.preprocess.faces.window_rgb`).
torchcodec probes and encodes; PyAV decodes, because torchcodec hands out RGB only.

Every failure a bad input can cause is raised as :class:`MediaError` with a short ``reason``
code that ends up in ``rejects.csv``.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import torch

__all__ = [
    "MediaError",
    "VideoInfo",
    "probe_video",
    "frame_times",
    "frames_shown_at",
    "read_audio",
    "write_wav",
    "FaceVideoWriter",
]


class MediaError(Exception):
    """An unusable clip: ``reason`` is a short code (for ``rejects.csv``), ``str`` the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # average source rate
    begin_s: float  # first frame's time (container clock)
    end_s: float  # end of the last frame
    n_frames: int  # frames actually in the file (scanned)
    n_frames_header: int | None  # frames the container claims


def _short(err: Exception) -> str:
    """First line of an error without the C++ source location torchcodec prepends."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if ".cpp:" in text:
        text = text.split(", ", 2)[-1]
    return text[:200]


def probe_video(path: str | Path) -> VideoInfo:
    """A video's geometry and clock, or :class:`MediaError`.

    The file's packets are scanned (``seek_mode='exact'``), so a file whose container promises
    more frames than it holds is reported as ``truncated_video``.
    """
    from torchcodec.decoders import VideoDecoder

    path = Path(path)
    if not path.exists():
        raise MediaError("missing_file", f"video file not found: {path.name}")
    if path.stat().st_size == 0:
        raise MediaError("empty_file", f"video file is empty (0 bytes): {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = VideoDecoder(
                str(path), dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact"
            )
        md = dec.metadata
    except Exception as err:  # torchcodec raises RuntimeError/ValueError for every bad input
        raise _open_failure(path, err) from None
    n = int(md.num_frames or 0)
    if n <= 0 or not md.width or not md.height:
        raise MediaError("unreadable_video", "no decodable video frames")
    fps = float(md.average_fps or 0.0)
    begin = float(md.begin_stream_seconds or 0.0)
    end = md.end_stream_seconds
    end = float(end) if end is not None and end > begin else begin + n / (fps or 25.0)
    header = md.num_frames_from_header
    info = VideoInfo(
        width=int(md.width),
        height=int(md.height),
        fps=fps or n / max(end - begin, 1e-6),
        begin_s=begin,
        end_s=end,
        n_frames=n,
        n_frames_header=int(header) if header else None,
    )
    if info.n_frames_header and n < info.n_frames_header - max(2, 0.02 * info.n_frames_header):
        raise MediaError(
            "truncated_video",
            f"container declares {info.n_frames_header} frames but only {n} are present",
        )
    return info


#: leading bytes of the containers the supported datasets ship (mp4/mov, avi, flv, mkv/webm)
_MAGIC = {b"RIFF": "AVI", b"FLV\x01": "FLV", b"\x1aE\xdf\xa3": "Matroska/WebM"}

#: top-level box types of ISO media (ISO/IEC 14496-12) and QuickTime files; a top-level box of
#: another type means the bytes are damaged, not that the file was cut short
_ISO_TOP_LEVEL = frozenset({"ftyp", "styp", "moov", "mdat", "free", "skip", "wide", "uuid",
                            "pdin", "moof", "mfra", "meta", "sidx", "ssix", "prft", "emsg",
                            "pnot", "junk"})


def _open_failure(path: Path, err: Exception) -> MediaError:
    """Why a file that exists and is not empty cannot be opened: an ISO media file (mp4, mov)
    cut short is ``truncated_video`` naming the box that breaks off or is missing; anything
    else is ``unreadable_video``, saying when the file is not a media container at all."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        cut = _iso_truncation(path)
        if cut:
            return MediaError("truncated_video", cut)
    elif not any(head.startswith(m) for m in _MAGIC):
        return MediaError("unreadable_video", f"not a media file (it starts with {head[:8]!r}); "
                          f"cannot open video: {_short(err)}")
    return MediaError("unreadable_video", f"cannot open video: {_short(err)}")


def _iso_truncation(path: Path) -> str:
    """What is missing from an ISO media file whose top-level boxes break off, or ``""`` when
    nothing is (or a box of no known type shows the bytes are damaged rather than cut).

    Recorders and non-"faststart" encoders write the ``moov`` box (the index of every frame)
    after the media data, so a file cut anywhere loses it.
    """
    size = path.stat().st_size
    seen, pos = [], 0
    with open(path, "rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            length, kind = struct.unpack(">I4s", header[:8])
            name = kind.decode("latin-1")
            if name not in _ISO_TOP_LEVEL:
                return ""
            if length == 1 and len(header) == 16:
                length = struct.unpack(">Q", header[8:16])[0]
            elif length == 0:  # runs to the end of the file
                length = size - pos
            if length < 8:
                return f"mp4 box {name!r} at byte {pos} has an invalid size {length}"
            seen.append(name)
            if pos + length > size:
                miss = "" if "moov" in seen else "; the 'moov' box (the frame index) is missing"
                return (f"file cut short: mp4 box {name!r} needs {length} bytes from byte {pos}, "
                        f"the file ends after {size - pos}{miss}")
            pos += length
    if "moov" not in seen:
        return f"file cut short: no 'moov' box (the frame index) after {', '.join(seen)}"
    return ""


def frame_times(info: VideoInfo, fps: float) -> np.ndarray:
    """Sample times of the constant-rate output frames: the middle of each 1/fps interval.

    Output frame ``k`` stands for ``[begin + k/fps, begin + (k+1)/fps)``, the same span as WAV
    samples ``[k, k+1) * sample_rate / fps``; the frame shown at the interval's middle is used.
    """
    n = int(math.floor((info.end_s - info.begin_s) * fps + 1e-3))
    n = max(n, 1)
    return info.begin_s + (np.arange(n) + 0.5) / fps


def frames_shown_at(path: str | Path, times: np.ndarray, info: VideoInfo) -> Iterator[np.ndarray]:
    """Decode ``path`` once, front to back, and yield the frame shown at each of ``times``
    (ascending) as an I420 ``(H * 3 / 2, W)`` uint8 array (a frame shown at several times is
    one array). Only shown frames are converted out of the decoder; odd frame sides are rounded
    down to even ones (4:2:0)."""
    import av

    t = np.clip(times, info.begin_s, np.nextafter(info.end_s, -np.inf))
    previous = converted = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # one worker per core: frame threads would oversubscribe
            for frame in _frame_at_each_time(container.decode(stream), t, info):
                if frame is not previous:
                    previous, converted = frame, _i420(frame)
                yield converted
    except av.FFmpegError as err:
        raise MediaError("truncated_video", f"decoding failed: {_short(err)}") from None


def _frame_at_each_time(decoded: Iterator, t: np.ndarray, info: VideoInfo) -> Iterator:
    """The decoded frame shown at each of ``t``: a frame is shown from its timestamp until the
    next frame's; the last one until the clip's end."""
    k, shown, shown_at = 0, None, info.begin_s
    for frame in decoded:
        at = float(frame.time) if frame.time is not None else shown_at + 1.0 / info.fps
        while k < len(t) and shown is not None and t[k] < at:
            yield shown
            k += 1
        if k == len(t):
            return
        shown, shown_at = frame, at
    if shown is None:
        raise MediaError("unreadable_video", "no decodable video frames")
    if k < len(t) and t[-1] > shown_at + 2.0 / info.fps:
        raise MediaError("truncated_video", f"frames stop at {shown_at:.2f} s of a clip that "
                         f"runs to {info.end_s:.2f} s")
    while k < len(t):
        yield shown
        k += 1


def _i420(frame) -> np.ndarray:
    if frame.width % 2 or frame.height % 2:
        frame = frame.reformat(width=frame.width & ~1, height=frame.height & ~1)
    return frame.to_ndarray(format="yuv420p")


def read_audio(
    path: str | Path,
    start_s: float,
    n_samples: int,
    sample_rate: int,
) -> tuple[np.ndarray, int]:
    """Mono int16 audio of ``[start_s, start_s + n_samples/sample_rate)`` on the file's clock.

    Returns ``(samples, real)``: exactly ``n_samples`` samples (zero-padded where the track
    starts late or ends early) and how many of them came from the file.
    """
    from torchcodec.decoders import AudioDecoder

    path = Path(path)
    if not path.exists():
        raise MediaError("missing_file", f"audio file not found: {path.name}")
    if path.stat().st_size == 0:
        raise MediaError("empty_file", f"audio file is empty (0 bytes): {path.name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dec = AudioDecoder(str(path), sample_rate=sample_rate, num_channels=1)
    except ValueError as err:
        if "audio stream" in str(err):
            raise MediaError("no_audio", "the file has no audio track") from None
        raise MediaError("unreadable_audio", f"cannot open audio: {_short(err)}") from None
    except Exception as err:
        raise MediaError("unreadable_audio", f"cannot open audio: {_short(err)}") from None
    stop_s = start_s + n_samples / sample_rate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = dec.get_samples_played_in_range(
                start_seconds=max(0.0, start_s), stop_seconds=stop_s
            )
    except Exception as err:
        raise MediaError("unreadable_audio", f"audio decoding failed: {_short(err)}") from None
    data = got.data.numpy()
    data = data[0] if data.ndim == 2 else data.reshape(-1)
    offset = int(round((float(got.pts_seconds) - start_s) * sample_rate))
    out = np.zeros(n_samples, np.int16)
    lo = max(0, offset)
    src = data[lo - offset :]
    take = max(0, min(len(src), n_samples - lo))
    if take:
        pcm = np.clip(np.rint(src[:take] * 32768.0), -32768, 32767).astype(np.int16)
        out[lo : lo + take] = pcm
    return out, take


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV."""
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")


class FaceVideoWriter:
    """Stream RGB uint8 frames ``(n, S, S, 3)`` into an H.264 mp4 (one thread, deterministic)."""

    def __init__(self, path: str | Path, size: int, fps: int, *, crf: int, preset: str,
                 gop: int, codec: str = "libx264", pixel_format: str = "yuv420p"):
        from torchcodec.encoders import Encoder

        self.path = str(path)
        self._enc = Encoder()
        self._stream = self._enc.add_video(
            height=size, width=size, frame_rate=fps, codec=codec, pixel_format=pixel_format,
            crf=crf, preset=preset, extra_options={"threads": "1", "g": str(gop)},
        )
        self._open = False
        self.n_frames = 0

    def __enter__(self) -> FaceVideoWriter:
        self._enc.open_file(self.path)
        self._open = True
        return self

    def add(self, frames: np.ndarray) -> None:
        if len(frames):
            self._stream.add_frames(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous())
            self.n_frames += len(frames)

    def __exit__(self, *exc) -> None:
        if self._open:
            self._open = False
            self._enc.close()
