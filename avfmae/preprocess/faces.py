"""Face detection, one-face tracking, landmark alignment and crop geometry.

Two detectors share one tracker. ``mtcnn`` (the default) is a CNN cascade that also gives five
facial landmarks (:mod:`avfmae.preprocess.mtcnn`); ``haar`` is OpenCV's bundled frontal-face
Haar cascade, faster but blind to roll, profiles, blur and dark scenes
(``benchmarks/bench_faces.py`` measures both).

Detection runs on keyframes (every ``detect_every``-th output frame plus the last). A
whole-frame search runs on the first keyframe, every ``full_every``-th one and whenever
tracking loses the face; in between the search is confined to a window around the current
track, rescaled so the face is ~``roi_face_px`` pixels — an order of magnitude cheaper than a
whole-frame search. Detections are linked across keyframes by overlap into tracks; the track
with the largest summed box side (present most often and largest) is the clip's face. Its boxes
and landmarks are smoothed over keyframes and linearly interpolated to every frame.

With ``align`` the crop is the similarity transform (rotation, uniform scale, shift) that puts
the five smoothed landmarks closest, in least squares, to a canonical face (:data:`TEMPLATE`);
the Haar detector has no landmarks and only levels the eye line found by the eye cascade.

A detection is a row ``(cx, cy, side, confidence, x1, y1, …, x5, y5)`` in source pixels (Haar
rows carry NaN confidence and landmarks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from .mtcnn import N_COLS, Mtcnn
from .settings import EYE_CASCADE, FACE_CASCADE, Settings

__all__ = [
    "HaarDetector", "CnnDetector", "make_detector", "Track", "TEMPLATE", "template_points",
    "keyframe_indices", "track_face", "crop_params", "crop_frames", "preload_detectors",
    "window_rgb",
]

#: canonical positions of left eye, right eye, nose tip, left and right mouth corner in a
#: 112 × 112 face crop (the ArcFace/InsightFace alignment template)
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]])

_CASCADES: dict[str, cv2.CascadeClassifier] = {}
_MTCNN: list[Mtcnn] = []


def _cascade(name: str) -> cv2.CascadeClassifier:
    if name not in _CASCADES:
        c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if c.empty():  # pragma: no cover - broken OpenCV install
            raise RuntimeError(f"OpenCV cascade {name} could not be loaded")
        _CASCADES[name] = c
    return _CASCADES[name]


def _mtcnn() -> Mtcnn:
    if not _MTCNN:
        _MTCNN.append(Mtcnn())
    return _MTCNN[0]


def preload_detectors() -> None:
    """Load the networks and cascades now (a forkserver does this once for all its workers)."""
    _cascade(FACE_CASCADE)
    _cascade(EYE_CASCADE)
    _mtcnn()


def _to_cxcys(rects: np.ndarray, scale: float, ox: float = 0.0, oy: float = 0.0) -> np.ndarray:
    if len(rects) == 0:
        return np.zeros((0, 3))
    r = np.asarray(rects, np.float64) / scale
    side = (r[:, 2] + r[:, 3]) / 2
    return np.stack([r[:, 0] + r[:, 2] / 2 + ox, r[:, 1] + r[:, 3] / 2 + oy, side], 1)


def _rows(cxcys: np.ndarray) -> np.ndarray:
    """Haar boxes ``(n, 3)`` → detection rows without confidence or landmarks."""
    out = np.full((len(cxcys), N_COLS), np.nan)
    out[:, :3] = cxcys
    return out


Window = tuple[int, int, int, int]


def _window(box: np.ndarray, expand: float, w: int, h: int) -> Window | None:
    """The box grown by ``expand`` × its side per edge, clipped to the frame, with even corners
    (whole chroma samples of a 4:2:0 frame)."""
    cx, cy, side = box[:3]
    half = side / 2 + expand * side
    x0, y0 = max(0, int(cx - half)) & ~1, max(0, int(cy - half)) & ~1
    x1 = min(w, int(math.ceil(cx + half)) + 1 & ~1)
    y1 = min(h, int(math.ceil(cy + half)) + 1 & ~1)
    if x1 - x0 < 24 or y1 - y0 < 24:
        return None
    return x0, y0, x1, y1


def _frame_size(i420: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an I420 frame ``(H * 3 / 2, W)``."""
    return i420.shape[1], i420.shape[0] * 2 // 3


def _box_shrink(win: Window, sc: float) -> tuple[int, Window, tuple[int, int]]:
    """How to shrink window ``win`` by ``sc``: a whole factor ``k`` first (OpenCV's fast
    area-averaging path), then the rest on the ``k²`` times smaller image (2.5–4× cheaper than
    one fractional area shrink at these sizes, docs/speed.md "Preprocessing").
    Returns ``k``, the window trimmed to whole ``2 k`` blocks (at most ``2 k - 1`` pixels off
    its right and bottom edges) and the even output ``(width, height)``; ``sc ≥ 1`` keeps the
    window as it is."""
    x0, y0, x1, y1 = win
    if sc >= 1.0:
        return 1, win, (x1 - x0, y1 - y0)
    k = int(1 / sc) if sc <= 0.5 else 1
    x1, y1 = x0 + (x1 - x0) // (2 * k) * 2 * k, y0 + (y1 - y0) // (2 * k) * 2 * k
    size = (max(2, 2 * round((x1 - x0) * sc / 2)), max(2, 2 * round((y1 - y0) * sc / 2)))
    return k, (x0, y0, x1, y1), size


def _area_shrink(img: np.ndarray, sc: float) -> np.ndarray:
    if sc >= 1.0:
        return img
    size = (max(1, round(img.shape[1] * sc)), max(1, round(img.shape[0] * sc)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _shrink_by(plane: np.ndarray, k: int, size: tuple[int, int]) -> np.ndarray:
    """``plane`` area-averaged by the whole factor ``k``, then to ``size``."""
    if k > 1:
        plane = cv2.resize(plane, (plane.shape[1] // k, plane.shape[0] // k),
                           interpolation=cv2.INTER_AREA)
    if plane.shape[1::-1] == size:
        return plane
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA)


def window_rgb(i420: np.ndarray, win: Window, sc: float) -> tuple[np.ndarray, float]:
    """RGB image ``(h, w, 3)`` of window ``win`` (even ``x0, y0, x1, y1``) of an I420 frame,
    shrunk by about ``sc``, and the exact scale: image pixels per frame pixel from ``(x0, y0)``.
    The planes are shrunk before the colour conversion: a whole-frame search of a 720p frame
    at a quarter of its size converts a sixteenth of the pixels."""
    W, H = _frame_size(i420)
    k, (x0, y0, x1, y1), (w, h) = _box_shrink(win, sc)
    y, u, v = _planes(i420.reshape(-1), H, W)
    small = np.empty(w * h * 3 // 2, np.uint8)
    sy, su, sv = _planes(small, h, w)
    sy[:] = _shrink_by(y[y0:y1, x0:x1], k, (w, h))
    cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, x1 // 2, y1 // 2
    su[:] = _shrink_by(u[cy0:cy1, cx0:cx1], k, (w // 2, h // 2))
    sv[:] = _shrink_by(v[cy0:cy1, cx0:cx1], k, (w // 2, h // 2))
    return cv2.cvtColor(small.reshape(h * 3 // 2, w), cv2.COLOR_YUV2RGB_I420), w / (x1 - x0)


class HaarDetector:
    """Haar-cascade face (and eye) search on I420 frames, in grayscale.

    The grey image is the whole frame's RGB converted to grey: at the smallest faces (~25 px)
    the cascade loses detections on the luma plane or on the shrink order of :func:`window_rgb`
    (``benchmarks/bench_faces.py``, condition ``small``)."""

    has_landmarks = False

    def __init__(self, s: Settings):
        self.s = s
        self.face = _cascade(FACE_CASCADE)
        self.eye = _cascade(EYE_CASCADE) if s.align else None
        self._gray: tuple[np.ndarray, np.ndarray] | None = None

    def gray(self, i420: np.ndarray) -> np.ndarray:
        """The grey frame (the last one is kept: a keyframe is searched several times)."""
        if self._gray is None or self._gray[0] is not i420:
            rgb_frame = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
            self._gray = (i420, cv2.cvtColor(rgb_frame, cv2.COLOR_RGB2GRAY))
        return self._gray[1]

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

    def full(self, i420: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Search the whole frame for faces of at least ``min_face`` × the short side (the
        cascade has no cheaper way to skip the ``known`` ones: the caller drops them)."""
        gray = self.gray(i420)
        h, w = gray.shape
        short = min(h, w)
        sc = min(1.0, self.s.det_min_px / (self.s.min_face * short))
        img = gray if sc >= 1.0 else cv2.resize(
            gray, (max(1, round(w * sc)), max(1, round(h * sc))), interpolation=cv2.INTER_AREA
        )
        sc_x, sc_y = img.shape[1] / w, img.shape[0] / h
        min_px = max(24, int(self.s.min_face * short * min(sc_x, sc_y)))
        rects = self._run(img, min_px, None, self.s.full_scale_factor, self.s.min_neighbors)
        return _rows(_to_cxcys(rects, (sc_x + sc_y) / 2))

    def near(self, i420: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Search a window around ``box`` for a face of about the same size.

        Haar responses depend on the exact window grid, so a miss is retried once at another
        image scale before giving up.
        """
        gray = self.gray(i420)
        found = self._near(gray, box, self.s.roi_face_px)
        if not len(found):
            found = self._near(gray, box, round(self.s.roi_face_px * 1.3))
        return _rows(found)

    def _near(self, gray: np.ndarray, box: np.ndarray, face_px: int) -> np.ndarray:
        h, w = gray.shape
        win = _window(box, self.s.roi_expand, w, h)
        if win is None:
            return np.zeros((0, 3))
        x0, y0, x1, y1 = win
        side = float(box[2])
        sc = min(1.0, face_px / side)
        roi = _area_shrink(gray[y0:y1, x0:x1], sc)
        fs = side * sc
        rects = self._run(roi, max(24, int(0.75 * fs)), max(25, int(math.ceil(1.35 * fs))),
                          self.s.scale_factor, self.s.near_min_neighbors)
        return _to_cxcys(rects, sc, x0, y0)

    def roll(self, i420: np.ndarray, box: np.ndarray) -> float:
        """Eye-line angle in degrees (positive: right eye lower); NaN unless both eyes are found."""
        assert self.eye is not None
        gray = self.gray(i420)
        h, w = gray.shape
        cx, cy, side = box[:3]
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


class CnnDetector:
    """MTCNN search (boxes, confidences, five landmarks) on I420 frames, converted to RGB
    only in the shrunk region searched."""

    has_landmarks = True

    def __init__(self, s: Settings):
        self.s = s
        self.net = _mtcnn()

    def _keep(self, rows: np.ndarray) -> np.ndarray:
        return rows[rows[:, 3] >= self.s.min_confidence]

    def full(self, i420: np.ndarray, known: np.ndarray) -> np.ndarray:
        """Search the whole frame for faces of at least ``min_face`` × the short side, other
        than the ``known`` rows (``link_iou`` overlap)."""
        w, h = _frame_size(i420)
        min_px = self.s.min_face * min(h, w)
        # P-Net's first pyramid level shrinks the frame anyway: shrink it once, cheaply, first
        img, sc = window_rgb(i420, (0, 0, w, h), self.s.det_min_px / min_px)
        rows = self.net.detect(img, max(12.0, min_px * sc),
                               known=known[:, :3] * sc, known_iou=self.s.link_iou)
        return self._keep(_unscale(rows, sc, 0, 0))

    def near(self, i420: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Search a window around ``box`` for a face of about the same size."""
        win = _window(box, self.s.roi_expand, *_frame_size(i420))
        if win is None:
            return np.zeros((0, N_COLS))
        x0, y0, x1, y1 = win
        side = float(box[2])
        roi, sc = window_rgb(i420, win, self.s.cnn_face_px / side)
        prior = _unscale(box[None], 1 / sc, -x0 * sc, -y0 * sc)  # in ROI pixels
        for second in (False, True):  # a second pass sees the face centred in its box
            cx, cy, half = prior[0, 0], prior[0, 1], prior[0, 2] / 2
            rows = self.net.refine(roi, np.array([[cx - half, cy - half, cx + half, cy + half]]))
            if not len(rows) or (iou := _iou(rows[0], prior[0])) < 0.5:
                break
            prior = rows
            if second or iou >= self.s.refine_iou:  # centred (already): O-Net's box stands
                return self._keep(_unscale(prior, sc, x0, y0))
        rows = self.net.detect(roi, max(12.0, 0.6 * side * sc), max_faces=2)
        return self._keep(_unscale(rows, sc, x0, y0))


def _unscale(rows: np.ndarray, sc: float, ox: float, oy: float) -> np.ndarray:
    """Rows found in an image shrunk by ``sc`` and cut at ``(ox, oy)`` → source pixels."""
    out = rows.copy()
    out[:, [0, 1, 2]] /= sc
    out[:, 4:] /= sc
    out[:, [0] + list(range(4, N_COLS, 2))] += ox
    out[:, [1] + list(range(5, N_COLS, 2))] += oy
    return out


def make_detector(s: Settings) -> HaarDetector | CnnDetector:
    """The detector named by ``s.detector``."""
    return CnnDetector(s) if s.detector == "mtcnn" else HaarDetector(s)


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

    ``boxes``: ``(n_frames, 3)`` smoothed per-frame ``(cx, cy, side)``; ``points``:
    ``(n_frames, 5, 2)`` smoothed landmarks, or ``None`` (Haar); ``roll``: ``(n_frames,)``
    eye-line degrees from the eye cascade (zeros unless Haar with alignment); ``face_rate``:
    share of keyframes where the face was detected; ``confidence``: mean detector probability
    over those (NaN for Haar); ``max_jump``: largest move of the raw box centre between
    consecutive detections, as a share of the box side; ``jitter``: mean distance of raw
    detections from the smoothed track, as a share of the box side; ``n_keyframes``,
    ``n_detections`` for the log; ``found``: ``(n_keyframes,)`` whether the face was detected
    on each keyframe.
    """

    boxes: np.ndarray
    points: np.ndarray | None
    roll: np.ndarray
    face_rate: float
    confidence: float
    max_jump: float
    jitter: float
    n_keyframes: int
    n_detections: int
    found: np.ndarray


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


def _link(tracks: list[dict], found: list[np.ndarray], i: int, link_iou: float) -> None:
    """Append keyframe ``i``'s detections to the tracks they overlap most (or start new ones)."""
    taken: set[int] = set()
    for row in found:
        best, best_iou = None, link_iou
        for t_i, tr in enumerate(tracks):
            if t_i in taken or tr["k"][-1] < i - 3 or tr["k"][-1] == i:
                continue
            iou = _iou(tr["b"][-1], row)
            if iou >= best_iou:
                best, best_iou = t_i, iou
        if best is None:
            tracks.append({"k": [i], "b": [row], "score": 0.0})
            best = len(tracks) - 1
        else:
            tracks[best]["k"].append(i)
            tracks[best]["b"].append(row)
        tracks[best]["score"] += float(row[2])
        taken.add(best)


def _search(det: HaarDetector | CnnDetector, img: np.ndarray, i: int,
            anchor: dict | None) -> list[np.ndarray]:
    """Detections on keyframe ``i``: around the anchor track, and over the whole frame when due."""
    s = det.s
    near = np.zeros((0, N_COLS))
    recent = anchor is not None and anchor["k"][-1] >= i - 2
    if recent:
        last = anchor["b"][-1]
        near = det.near(img, last)
        near = near[np.argsort([-_iou(last, b) for b in near], kind="stable")]
    found = list(near)
    if not recent or i % s.full_every == 0 or not len(near):
        # whole-frame search for other (or lost) faces; a new face is re-measured by the
        # tracking search so every box of a track comes from the same image scale
        for row in det.full(img, np.asarray(found).reshape(-1, N_COLS)):
            if any(_iou(row, b) >= s.link_iou for b in found):
                continue
            again = det.near(img, row)
            if len(again):
                ious = [_iou(row, b) for b in again]
                if max(ious) >= s.link_iou:
                    row = again[int(np.argmax(ious))]
            found.append(row)
    return found


def track_face(
    images: list[np.ndarray], keys: np.ndarray, n_frames: int, det: HaarDetector | CnnDetector
) -> Track | None:
    """Detect on I420 keyframe ``images`` ``(H * 3 / 2, W)`` (frame indices ``keys``) and build
    the face track.

    Returns ``None`` when no face was found on any keyframe.
    """
    s = det.s
    tracks: list[dict] = []  # {"k": [keyframe positions], "b": [rows], "score": float}
    anchor: dict | None = None
    n_det = 0
    for i, img in enumerate(images):
        found = _search(det, img, i, anchor)
        n_det += len(found)
        _link(tracks, found, i, s.link_iou)
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
    per_frame = np.stack([np.interp(t, frames, sm[:, j]) for j in range(N_COLS)], 1)
    jitter = float(np.mean(np.hypot(*(raw[:, :2] - sm[:, :2]).T)) / np.mean(sm[:, 2]))
    steps = np.hypot(*np.diff(raw[:, :2], axis=0).T) / raw[1:, 2] if len(raw) > 1 else [0.0]

    roll = np.zeros(n_frames)
    if s.align and isinstance(det, HaarDetector):
        angles = np.array([det.roll(images[k], b) for k, b in zip(kpos, sm)])
        ok = ~np.isnan(angles)
        if ok.any():
            a = _smooth(angles[ok], s.smooth_sigma)
            roll = np.interp(t, frames[ok], a)
    return Track(
        boxes=per_frame[:, :3],
        points=per_frame[:, 4:].reshape(n_frames, 5, 2) if det.has_landmarks else None,
        roll=roll,
        face_rate=len(kpos) / len(images),
        confidence=float(np.mean(raw[:, 3])),
        max_jump=float(np.max(steps)),
        jitter=jitter,
        n_keyframes=len(images),
        n_detections=n_det,
        found=np.isin(np.arange(len(images)), kpos),
    )


def template_points(s: Settings) -> np.ndarray:
    """:data:`TEMPLATE` in crop pixels ``(5, 2)``: the 112-pixel template fills the crop's
    central ``face_size / (1 + 2 margin)`` square, as a box does without alignment."""
    inner = s.face_size / (1 + 2 * s.margin)
    return s.face_size / 2 + (TEMPLATE / 112 - 0.5) * inner


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift taking each point set of ``src``
    ``(n, k, 2)`` to ``dst`` ``(k, 2)`` (Umeyama) → ``(n, 2, 3)``."""
    mu_s, mu_d = src.mean(1), dst.mean(0)
    a, b = src - mu_s[:, None], dst - mu_d
    cov = np.einsum("kj,nki->nji", b, a) / src.shape[1]
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones_like(d)
    sign[:, 1] = np.sign(np.linalg.det(u @ vt))
    rot = (u * sign[:, None, :]) @ vt
    scale = (d * sign).sum(1) / a.var(1).sum(1)
    m = np.empty((len(src), 2, 3))
    m[:, :, :2] = scale[:, None, None] * rot
    m[:, :, 2] = mu_d - scale[:, None] * np.einsum("nij,nj->ni", rot, mu_s)
    return m


def crop_params(track: Track, s: Settings) -> np.ndarray:
    """Per-frame source→crop affine matrices ``(n, 2, 3)`` (float64)."""
    if s.align and track.points is not None:
        dst = template_points(s)
        return _similarity(track.points, dst)
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


def crop_frames(frames: Sequence[np.ndarray], mats: np.ndarray, s: Settings) -> np.ndarray:
    """Warp I420 frames ``(H * 3 / 2, W)`` with ``mats`` ``(n, 2, 3)`` → RGB ``(n, S, S, 3)``
    face crops. Each plane is warped on its own (chroma at half resolution), so only the crop
    is converted to colour."""
    F = s.face_size
    border = cv2.BORDER_CONSTANT if s.border == "constant" else cv2.BORDER_REPLICATE
    out = np.empty((len(frames), F, F, 3), np.uint8)
    crop = np.empty(F * F * 3 // 2, np.uint8)
    for i, (img, m) in enumerate(zip(frames, mats)):
        y, u, v = _planes(img.reshape(-1), img.shape[0] * 2 // 3, img.shape[1])
        cy, cu, cv = _planes(crop, F, F)
        mc = _chroma_matrix(m)
        cy[:] = _warp(y, m, F, border, fill=0)
        cu[:] = _warp(u, mc, F // 2, border, fill=128)
        cv[:] = _warp(v, mc, F // 2, border, fill=128)
        out[i] = cv2.cvtColor(crop.reshape(F * 3 // 2, F), cv2.COLOR_YUV2RGB_I420)
    return out


def _planes(flat: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y ``(H, W)``, U and V ``(H / 2, W / 2)`` planes of one flat I420 frame."""
    q = H * W // 4
    return (flat[: H * W].reshape(H, W), flat[H * W : H * W + q].reshape(H // 2, W // 2),
            flat[H * W + q :].reshape(H // 2, W // 2))


def _chroma_matrix(m: np.ndarray) -> np.ndarray:
    """The luma affine ``m`` acting on half-resolution chroma planes, whose sample ``c`` sits at
    luma position ``2 c + 0.5`` in source and crop alike."""
    mc = m.copy()
    mc[:, 2] = (m[:, :2] @ np.array([0.5, 0.5]) + m[:, 2] - 0.5) / 2
    return mc


def _warp(img: np.ndarray, m: np.ndarray, size: int, border: int, fill: int) -> np.ndarray:
    """``cv2.warpAffine`` of one plane to ``(size, size)``. A region shrunk below half size is
    first area-averaged by a whole factor ``k`` (OpenCV's fast path, docs/speed.md
    "Preprocessing"), so the warp itself never shrinks below half size: no aliasing."""
    scale = math.hypot(m[0, 0], m[0, 1])
    if scale >= 0.5:
        return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border,
                              borderValue=fill)
    k = math.ceil(0.5 / scale)
    H, W = img.shape[:2]
    inv = cv2.invertAffineTransform(m)
    corners = inv @ np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float).T
    x0 = max(0, int(math.floor(corners[0].min())) - 2)
    y0 = max(0, int(math.floor(corners[1].min())) - 2)
    x1 = x0 + min(W - x0, int(math.ceil(corners[0].max())) + 2 + k - x0) // k * k
    y1 = y0 + min(H - y0, int(math.ceil(corners[1].max())) + 2 + k - y0) // k * k
    if x1 - x0 < k or y1 - y0 < k:
        return np.full((size, size), fill, np.uint8)
    small = cv2.resize(img[y0:y1, x0:x1], ((x1 - x0) // k, (y1 - y0) // k),
                       interpolation=cv2.INTER_AREA)
    # a pixel q of the shrunk region covers source pixels k q … k q + k - 1: p = k q + (k-1)/2
    pre = np.array([[k, 0, x0 + (k - 1) / 2], [0, k, y0 + (k - 1) / 2], [0, 0, 1]])
    return cv2.warpAffine(small, m @ pre, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=fill)
