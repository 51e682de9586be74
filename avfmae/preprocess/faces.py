"""Face detection, one-face tracking and crop geometry.

Detection uses OpenCV's bundled frontal-face Haar cascade on grayscale keyframes (every
``detect_every``-th output frame plus the last). A whole-frame search runs on the first keyframe,
every ``full_every``-th one and whenever tracking loses the face; in between the search is
confined to a window around the current track, rescaled so the face is ~``roi_face_px`` pixels
— an order of magnitude cheaper than a whole-frame search. Detections are linked across
keyframes by overlap into tracks; the track with the largest summed box side (present most often
and largest) is the clip's face. Its boxes are smoothed over keyframes and linearly interpolated
to every frame. Optional alignment finds both eyes with the bundled eye cascade and rolls the
crop so the eye line is level.

Boxes are ``(cx, cy, side)`` in source pixels (Haar boxes are square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .settings import EYE_CASCADE, FACE_CASCADE, Settings

__all__ = [
    "FaceDetector", "Track", "keyframe_indices", "track_face", "crop_params", "crop_frames",
    "preload_cascades",
]

_CASCADES: dict[str, cv2.CascadeClassifier] = {}


def _cascade(name: str) -> cv2.CascadeClassifier:
    if name not in _CASCADES:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if c.empty():  # pragma: no cover - broken OpenCV install
            raise RuntimeError(f"OpenCV cascade {name} could not be loaded")
        _CASCADES[name] = c
    return _CASCADES[name]


def preload_cascades() -> None:
    """Load both cascades now (a forkserver does this once for all its workers)."""
    _cascade(FACE_CASCADE)
    _cascade(EYE_CASCADE)


def _to_cxcys(rects: np.ndarray, scale: float, ox: float = 0.0, oy: float = 0.0) -> np.ndarray:
    if len(rects) == 0:
        return np.zeros((0, 3))
    r = np.asarray(rects, np.float64) / scale
    side = (r[:, 2] + r[:, 3]) / 2
    return np.stack([r[:, 0] + r[:, 2] / 2 + ox, r[:, 1] + r[:, 3] / 2 + oy, side], 1)


class FaceDetector:
    """Haar-cascade face (and eye) search on grayscale frames."""

    def __init__(self, s: Settings):
        self.s = s
        self.face = _cascade(FACE_CASCADE)
        self.eye = _cascade(EYE_CASCADE) if s.align else None

    def _run(
        self, img: np.ndarray, min_px: int, max_px: int | None, factor: float, neighbors: int
    ) -> np.ndarray:
        img = cv2.equalizeHist(img)
        kw = {"minSize": (min_px, min_px)}
        if max_px:
            kw["maxSize"] = (max_px, max_px)
        return self.face.detectMultiScale(
            img, scaleFactor=factor, minNeighbors=neighbors, **kw
        )

    def full(self, gray: np.ndarray) -> np.ndarray:
        """Search the whole frame for faces of at least ``min_face`` × the short side."""
        h, w = gray.shape
        short = min(h, w)
        sc = min(1.0, self.s.det_min_px / (self.s.min_face * short))
        img = gray if sc >= 1.0 else cv2.resize(
            gray, (max(1, round(w * sc)), max(1, round(h * sc))), interpolation=cv2.INTER_AREA
        )
        sc_x, sc_y = img.shape[1] / w, img.shape[0] / h
        min_px = max(24, int(self.s.min_face * short * min(sc_x, sc_y)))
        rects = self._run(img, min_px, None, self.s.full_scale_factor, self.s.min_neighbors)
        return _to_cxcys(rects, (sc_x + sc_y) / 2)

    def near(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Search a window around ``box`` for a face of about the same size.

        Haar responses depend on the exact window grid, so a miss is retried once at another
        image scale before giving up.
        """
        found = self._near(gray, box, self.s.roi_face_px)
        if not len(found):
            found = self._near(gray, box, round(self.s.roi_face_px * 1.3))
        return found

    def _near(self, gray: np.ndarray, box: np.ndarray, face_px: int) -> np.ndarray:
        h, w = gray.shape
        cx, cy, side = box
        half = side / 2 + self.s.roi_expand * side
        x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
        x1, y1 = min(w, int(math.ceil(cx + half))), min(h, int(math.ceil(cy + half)))
        if x1 - x0 < 24 or y1 - y0 < 24:
            return np.zeros((0, 3))
        roi = gray[y0:y1, x0:x1]
        sc = min(1.0, face_px / side)
        if sc < 1.0:
            roi = cv2.resize(
                roi, (max(1, round(roi.shape[1] * sc)), max(1, round(roi.shape[0] * sc))),
                interpolation=cv2.INTER_AREA,
            )
        fs = side * sc
        rects = self._run(roi, max(24, int(0.75 * fs)), max(25, int(math.ceil(1.35 * fs))),
                          self.s.scale_factor, self.s.near_min_neighbors)
        return _to_cxcys(rects, sc, x0, y0)

    def roll(self, gray: np.ndarray, box: np.ndarray) -> float:
        """Eye-line angle in degrees (positive: right eye lower); NaN unless both eyes are found."""
        assert self.eye is not None
        h, w = gray.shape
        cx, cy, side = box
        x0, x1 = max(0, int(cx - side / 2)), min(w, int(cx + side / 2))
        y0, y1 = max(0, int(cy - side / 2)), min(h, int(cy + 0.05 * side))
        if x1 - x0 < 20 or y1 - y0 < 10:
            return math.nan
        roi = gray[y0:y1, x0:x1]
        sc = min(1.0, 120.0 / side)
        if sc < 1.0:
            roi = cv2.resize(
                roi, (max(1, round(roi.shape[1] * sc)), max(1, round(roi.shape[0] * sc))),
                interpolation=cv2.INTER_AREA,
            )
        fs = side * sc
        eyes = self.eye.detectMultiScale(
            cv2.equalizeHist(roi), scaleFactor=1.1, minNeighbors=3,
            minSize=(max(8, int(0.12 * fs)),) * 2, maxSize=(int(0.45 * fs) + 1,) * 2,
        )
        if len(eyes) < 2:
            return math.nan
        e = _to_cxcys(eyes, sc, x0, y0)
        left = e[e[:, 0] < cx]
        right = e[e[:, 0] >= cx]
        if not len(left) or not len(right):
            return math.nan
        lx, ly, _ = left[np.argmax(left[:, 2])]
        rx, ry, _ = right[np.argmax(right[:, 2])]
        ang = math.degrees(math.atan2(ry - ly, rx - lx))
        return ang if abs(ang) <= self.s.max_roll_deg else math.nan


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[2] / 2, a[0] + a[2] / 2, a[1] + a[2] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[2] / 2, b[0] + b[2] / 2, b[1] + b[2] / 2
    iw = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] ** 2 + b[2] ** 2 - inter + 1e-9)


@dataclass
class Track:
    """The clip's face track.

    ``boxes``: ``(n_frames, 3)`` smoothed per-frame ``(cx, cy, side)``; ``roll``: ``(n_frames,)``
    degrees (zeros without alignment); ``face_rate``: share of keyframes where the face was
    detected; ``jitter``: mean distance of raw detections from the smoothed track, as a share of
    the box side; ``n_keyframes``, ``n_detections`` for the log.
    """

    boxes: np.ndarray
    roll: np.ndarray
    face_rate: float
    jitter: float
    n_keyframes: int
    n_detections: int


def keyframe_indices(n_frames: int, every: int) -> np.ndarray:
    keys = list(range(0, n_frames, every))
    if keys[-1] != n_frames - 1:
        keys.append(n_frames - 1)
    return np.asarray(keys)


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge renormalisation (works for any length)."""
    if sigma <= 0 or len(values) < 2:
        return values
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    n = len(values)
    out = np.empty_like(values, dtype=np.float64)
    for i in range(n):
        lo, hi = max(0, i - r), min(n, i + r + 1)
        w = k[lo - i + r : hi - i + r]
        out[i] = (w[:, None] * values[lo:hi]).sum(0) / w.sum() if values.ndim == 2 else (
            (w * values[lo:hi]).sum() / w.sum()
        )
    return out


def track_face(
    grays: list[np.ndarray], keys: np.ndarray, n_frames: int, det: FaceDetector
) -> Track | None:
    """Detect on keyframe images ``grays`` (frame indices ``keys``) and build the face track.

    Returns ``None`` when no face was found on any keyframe.
    """
    s = det.s
    tracks: list[dict] = []  # {"k": [keyframe positions], "b": [boxes], "score": float}
    anchor: dict | None = None
    n_det = 0
    for i, gray in enumerate(grays):
        near = np.zeros((0, 3))
        recent = anchor is not None and anchor["k"][-1] >= i - 2
        if recent:
            last = anchor["b"][-1]
            near = det.near(gray, last)
            near = near[np.argsort([-_iou(last, b) for b in near], kind="stable")]
        found = list(near)
        if not recent or i % s.full_every == 0 or not len(near):
            # whole-frame search for other (or lost) faces; a new face is re-measured by the
            # tracking search so every box of a track comes from the same image scale
            for box in det.full(gray):
                if any(_iou(box, b) >= s.link_iou for b in found):
                    continue
                again = det.near(gray, box)
                if len(again):
                    ious = [_iou(box, b) for b in again]
                    if max(ious) >= s.link_iou:
                        box = again[int(np.argmax(ious))]
                found.append(box)
        n_det += len(found)
        taken: set[int] = set()
        for box in found:
            best, best_iou = None, s.link_iou
            for t_i, tr in enumerate(tracks):
                if t_i in taken or tr["k"][-1] < i - 3 or tr["k"][-1] == i:
                    continue
                iou = _iou(tr["b"][-1], box)
                if iou >= best_iou:
                    best, best_iou = t_i, iou
            if best is None:
                tracks.append({"k": [i], "b": [box], "score": 0.0})
                best = len(tracks) - 1
            else:
                tracks[best]["k"].append(i)
                tracks[best]["b"].append(box)
            tracks[best]["score"] += float(box[2])
            taken.add(best)
        if tracks:
            anchor = max(tracks, key=lambda tr: tr["score"])
    if not tracks:
        return None
    best = max(tracks, key=lambda tr: tr["score"])
    kpos = np.asarray(best["k"])
    raw = np.asarray(best["b"], np.float64)
    sm = _smooth(raw, s.smooth_sigma)
    sm[:, 2] = _smooth(raw[:, 2], s.size_sigma)  # the face's size changes slowly
    frames = keys[kpos].astype(np.float64)
    t = np.arange(n_frames, dtype=np.float64)
    boxes = np.stack([np.interp(t, frames, sm[:, j]) for j in range(3)], 1)
    jitter = float(np.mean(np.hypot(*(raw[:, :2] - sm[:, :2]).T)) / np.mean(sm[:, 2]))

    roll = np.zeros(n_frames)
    if s.align:
        angles = np.array([det.roll(grays[k], b) for k, b in zip(kpos, sm)])
        ok = ~np.isnan(angles)
        if ok.any():
            a = _smooth(angles[ok], s.smooth_sigma)
            roll = np.interp(t, frames[ok], a)
    return Track(
        boxes=boxes,
        roll=roll,
        face_rate=len(kpos) / len(grays),
        jitter=jitter,
        n_keyframes=len(grays),
        n_detections=n_det,
    )


def crop_params(track: Track, s: Settings) -> np.ndarray:
    """Per-frame source→crop affine matrices ``(n, 2, 3)`` (float64)."""
    n = len(track.boxes)
    mats = np.empty((n, 2, 3))
    F = s.face_size
    for i, ((cx, cy, side), ang) in enumerate(zip(track.boxes, track.roll)):
        scale = F / (side * (1 + 2 * s.margin))
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(ang), float(scale))
        m[0, 2] += F / 2 - cx
        m[1, 2] += F / 2 - cy
        mats[i] = m
    return mats


def crop_frames(frames: np.ndarray, mats: np.ndarray, s: Settings) -> np.ndarray:
    """Warp ``frames`` (n, H, W, 3) uint8 with ``mats`` → ``(n, S, S, 3)`` face crops."""
    F = s.face_size
    out = np.empty((len(frames), F, F, 3), np.uint8)
    border = cv2.BORDER_CONSTANT if s.border == "constant" else cv2.BORDER_REPLICATE
    H, W = frames.shape[1:3]
    for i, (img, m) in enumerate(zip(frames, mats)):
        scale = math.hypot(m[0, 0], m[0, 1])
        if scale < 0.5:
            # shrink the region the crop reads with area averaging first (no aliasing)
            inv = cv2.invertAffineTransform(m)
            corners = inv @ np.array([[0, 0, 1], [F, 0, 1], [0, F, 1], [F, F, 1]], float).T
            x0 = max(0, int(math.floor(corners[0].min())) - 2)
            y0 = max(0, int(math.floor(corners[1].min())) - 2)
            x1 = min(W, int(math.ceil(corners[0].max())) + 2)
            y1 = min(H, int(math.ceil(corners[1].max())) + 2)
            if x1 - x0 < 2 or y1 - y0 < 2:
                out[i] = 0
                continue
            f = 2 * scale
            sub = img[y0:y1, x0:x1]
            sw, sh = max(1, round(sub.shape[1] * f)), max(1, round(sub.shape[0] * f))
            small = cv2.resize(sub, (sw, sh), interpolation=cv2.INTER_AREA)
            fx, fy = sw / sub.shape[1], sh / sub.shape[0]
            # source point p = (q / f) + offset  →  m' = m ∘ that
            pre = np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]])
            m2 = m @ pre
            out[i] = cv2.warpAffine(
                small, m2, (F, F), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0
            )
        else:
            out[i] = cv2.warpAffine(
                img, m, (F, F), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0
            )
    return out
