"""Real-face test clips under controlled conditions, and how well a face pipeline does on them.

The faces are photos that ship inside registry packages and are free to use: scikit-image's
``astronaut`` (NASA, public domain) and matplotlib's ``grace_hopper`` (US Navy, public domain).
Face-free clips use scikit-image's ``chelsea`` (a cat), ``coffee`` and ``rocket``. Each clip
pastes the photo onto a noise background with a slow drift and one condition (roll, scale,
blur, low light, occlusion, a profile-like yaw warp); the true eye positions of every frame
follow from the same transform. Reference eyes of the upright photos were placed by hand
(``EYES``, checked against the photo).

scikit-image is a test dependency: this module imports it only when a clip is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CONDITIONS", "MODERATE", "FACES", "NON_FACES", "Truth", "load_photo",
           "render_frames", "write_clip", "make_real_clip", "run_pipeline", "score_track"]

#: eye centres (left, right as seen in the image) of each upright photo, in its pixels
EYES = {"astronaut": ((204.0, 101.0), (247.0, 103.0)), "grace_hopper": ((222.0, 191.0),
                                                                        (309.0, 187.0))}
FACES = tuple(EYES)
NON_FACES = ("chelsea", "coffee", "rocket")

#: condition → (face side as a share of the frame's short side, roll °, blur σ as a share of
#: the face side, brightness gain, occluded, yaw squeeze)
CONDITIONS = {
    "frontal": (0.35, 0, 0, 1.0, False, 1.0),
    "roll15": (0.35, 15, 0, 1.0, False, 1.0),
    "roll30": (0.35, 30, 0, 1.0, False, 1.0),
    "small": (0.18, 0, 0, 1.0, False, 1.0),
    "large": (0.7, 0, 0, 1.0, False, 1.0),
    "blur": (0.35, 0, 0.03, 1.0, False, 1.0),
    "dark": (0.35, 0, 0, 0.2, False, 1.0),
    "occluded": (0.35, 0, 0, 1.0, True, 1.0),
    "profile": (0.35, 0, 0, 1.0, False, 0.55),
}
#: the frontal-to-moderate conditions (the ones a face pipeline must not miss)
MODERATE = ("frontal", "roll15", "small", "large", "blur", "dark", "occluded")


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photo shipped by scikit-image or matplotlib."""
    if name == "grace_hopper":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    import skimage.data

    return getattr(skimage.data, name)()


@dataclass
class Truth:
    """``eyes``: ``(n_frames, 2, 2)`` true left/right eye centres in frame pixels (NaN when the
    clip has no face)."""

    eyes: np.ndarray


def _frame_transform(i: int, n: int, photo_eyes: np.ndarray, frame: tuple[int, int],
                     face_share: float, roll: float, squeeze: float) -> np.ndarray:
    """3 × 3 photo → frame matrix of frame ``i``: face centred with a slow circular drift."""
    w, h = frame
    eye_mid = photo_eyes.mean(0)
    iod = float(np.linalg.norm(photo_eyes[1] - photo_eyes[0]))
    # a face box is about 2.5 inter-ocular distances wide
    scale = face_share * min(w, h) / (2.5 * iod)
    a = 2 * math.pi * i / max(n, 1)
    drift = 0.02 * min(w, h)
    cx, cy = w / 2 + drift * math.cos(a), h / 2 + drift * math.sin(a)
    to_origin = np.array([[1, 0, -eye_mid[0]], [0, 1, -eye_mid[1]], [0, 0, 1]], float)
    yaw = np.array([[squeeze, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    if squeeze < 1.0:  # perspective: the far side shrinks, as a head turned away
        yaw[2, 0] = (1 - squeeze) / (2.5 * iod)
    r = math.radians(roll)
    rot = np.array([[scale * math.cos(r), -scale * math.sin(r), cx],
                    [scale * math.sin(r), scale * math.cos(r), cy], [0, 0, 1]], float)
    return rot @ yaw @ to_origin


def _background(frame: tuple[int, int], seed: int) -> np.ndarray:
    w, h = frame
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def render_frames(name: str, condition: str, *, frame: tuple[int, int] = (640, 360),
                  n_frames: int = 50, seed: int = 0) -> tuple[np.ndarray, Truth]:
    """``(n_frames, H, W, 3)`` uint8 frames of photo ``name`` under ``condition``, and the
    truth. Face-free photos ignore the face geometry and fill about half the frame."""
    photo = load_photo(name)
    face_share, roll, blur, gain, occluded, squeeze = CONDITIONS[condition]
    has_face = name in EYES
    if has_face:
        photo_eyes = np.asarray(EYES[name], float)
    else:
        ph, pw = photo.shape[:2]
        photo_eyes = np.array([[pw * 0.4, ph / 2], [pw * 0.6, ph / 2]])
        face_share, roll, squeeze = 0.4, 0, 1.0
    w, h = frame
    bg = _background(frame, seed)
    out = np.empty((n_frames, h, w, 3), np.uint8)
    eyes = np.full((n_frames, 2, 2), np.nan)
    mask_src = np.full(photo.shape[:2], 255, np.uint8)
    for i in range(n_frames):
        m = _frame_transform(i, n_frames, photo_eyes, frame, face_share, roll, squeeze)
        img = cv2.warpPerspective(photo, m, frame, flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(mask_src, m, frame, flags=cv2.INTER_NEAREST)
        f = np.where(mask[..., None] > 0, img, bg)
        side = face_share * min(w, h)
        if has_face:
            p = np.c_[photo_eyes, np.ones(2)] @ m.T
            eyes[i] = p[:, :2] / p[:, 2:]
            if occluded:  # a hand-sized block over nose and mouth
                mid = eyes[i].mean(0)
                down = np.array([-(eyes[i][1] - eyes[i][0])[1], (eyes[i][1] - eyes[i][0])[0]])
                c = mid + 0.9 * down
                cv2.circle(f, (int(c[0]), int(c[1])), int(0.75 * np.linalg.norm(down)),
                           (90, 70, 60), -1, cv2.LINE_AA)
        if blur:
            f = cv2.GaussianBlur(f, (0, 0), blur * side)
        if gain != 1.0:  # low light: dimmed and noisy, as a sensor pushed to high gain
            noise = np.random.default_rng(seed + i).normal(0, 4, f.shape)
            f = np.clip(f * gain + noise, 0, 255)
        out[i] = f.astype(np.uint8)
    return out, Truth(eyes=eyes)


def write_clip(path: str | Path, frames: np.ndarray, fps: int = 25,
               sample_rate: int = 16000) -> Path:
    """Encode ``frames`` as an H.264 mp4 with a quiet audio track (what the stage expects)."""
    import torch
    from torchcodec.encoders import Encoder

    n, h, w = frames.shape[:3]
    enc = Encoder()
    vs = enc.add_video(height=h, width=w, frame_rate=fps, codec="libx264", preset="ultrafast",
                       crf=20, extra_options={"threads": "1"})
    aus = enc.add_audio(sample_rate=sample_rate, num_channels=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with enc.open_file(str(path)):
        vs.add_frames(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous())
        m = int(round(n / fps * sample_rate))
        wave = 0.01 * np.random.default_rng(0).standard_normal(m).astype(np.float32)
        aus.add_samples(torch.from_numpy(wave)[None])
    return path


def make_real_clip(path: str | Path, name: str, condition: str, **kw) -> tuple[Path, Truth]:
    """Render and encode one clip; keyword arguments go to :func:`render_frames`."""
    frames, truth = render_frames(name, condition, **kw)
    return write_clip(path, frames), truth


def score_track(track, keys: np.ndarray, mats: np.ndarray, truth: Truth,
                template_eyes: np.ndarray) -> dict[str, float]:
    """Detection rate and alignment error of a face track against the truth.

    ``track``: :class:`~avfmae.preprocess.faces.Track` or ``None``; ``keys``: keyframe indices;
    ``mats``: ``(n, 2, 3)`` crop matrices; ``template_eyes``: ``(2, 2)`` where the eyes belong
    in the crop. A keyframe counts as found when the track detected a face there whose box holds
    the true eye midpoint. Alignment error: mean distance of the true eyes, mapped into the
    crop, from ``template_eyes``, over the template's inter-ocular distance; roll error: the
    mapped eye line's angle in degrees.
    """
    if track is None:
        return {"detection_rate": 0.0, "eye_error": math.nan, "roll_error_deg": math.nan}
    mid = truth.eyes[keys].mean(1)
    box = track.boxes[keys]
    inside = np.all(np.abs(mid - box[:, :2]) <= box[:, 2:3] / 2, axis=1)
    rate = float(np.mean(track.found & inside))
    e = np.einsum("nij,nkj->nki", mats[:, :, :2], truth.eyes) + mats[:, None, :, 2]
    iod = float(np.linalg.norm(template_eyes[1] - template_eyes[0]))
    err = np.linalg.norm(e - template_eyes[None], axis=2).mean(1) / iod
    d = e[:, 1] - e[:, 0]
    roll = np.degrees(np.abs(np.arctan2(d[:, 1], d[:, 0])))
    return {"detection_rate": rate, "eye_error": float(err.mean()),
            "roll_error_deg": float(roll.mean())}


def run_pipeline(video: str | Path, s) -> tuple[object, np.ndarray, np.ndarray, float]:
    """Decode ``video``, track the face and compute the crop matrices with settings ``s``
    (what :func:`~avfmae.preprocess.clip.process_clip` does before cropping) →
    ``(track or None, keyframe indices, (n, 2, 3) matrices or None, CPU seconds)``."""
    import time

    from .faces import crop_params, keyframe_indices, make_detector, track_face
    from .media import frame_times, frames_shown_at, probe_video

    info = probe_video(video)
    times = frame_times(info, s.fps)
    keys = keyframe_indices(len(times), s.detect_every)
    frames = list(frames_shown_at(video, times[keys], info))
    t0 = time.process_time()
    track = track_face(frames, keys, len(times), make_detector(s))
    mats = crop_params(track, s) if track is not None else None
    return track, keys, mats, time.process_time() - t0
