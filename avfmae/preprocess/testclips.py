"""Small clips with known geometry and timing, for tests and benchmarks of the preprocess stage.

:func:`draw_face` renders a flat cartoon face that OpenCV's frontal-face Haar cascade finds
(skin oval, darker eye sockets with eyes, brows, nose line, mouth, hair); :func:`make_clip`
writes an mp4 (H.264 + AAC, in-process through torchcodec) with such a face at a chosen
position, optional head motion, an optional full-frame flash and an optional audio beep at
chosen times, an optional roll of the whole face, and a chosen audio length (or none).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = ["draw_face", "make_clip", "SKIN_RGB"]

SKIN_RGB = (220, 180, 150)


def draw_face(img: np.ndarray, cx: float, cy: float, width: float, roll_deg: float = 0.0) -> None:
    """Draw a face of ``width`` pixels centred at ``(cx, cy)`` into RGB ``img`` (in place).

    The oval is ``1.3 × width`` tall. ``roll_deg`` rotates the face (positive: clockwise on
    screen, i.e. the right eye lower).
    """
    s = float(width)
    h = 1.3 * s
    layer = np.zeros_like(img)
    mask = np.zeros(img.shape[:2], np.uint8)

    def p(x: float, y: float) -> tuple[int, int]:
        return int(round(x)), int(round(y))

    lw = max(2, int(0.04 * s))
    # hair, skin
    cv2.ellipse(layer, p(cx, cy - 0.38 * h), p(0.52 * s, 0.2 * h), 0, 180, 360, (60, 40, 30), -1,
                cv2.LINE_AA)
    cv2.ellipse(mask, p(cx, cy - 0.38 * h), p(0.52 * s, 0.2 * h), 0, 180, 360, 255, -1)
    cv2.ellipse(layer, p(cx, cy), p(s / 2, h / 2), 0, 0, 360, SKIN_RGB, -1, cv2.LINE_AA)
    cv2.ellipse(mask, p(cx, cy), p(s / 2, h / 2), 0, 0, 360, 255, -1)
    ey = cy - 0.12 * h
    ex = 0.2 * s
    for sx in (-1, 1):
        x = cx + sx * ex
        cv2.ellipse(layer, p(x, ey - 0.09 * h), p(0.13 * s, 0.03 * s), 0, 180, 360, (70, 50, 40),
                    lw, cv2.LINE_AA)
        cv2.ellipse(layer, p(x, ey), p(0.13 * s, 0.075 * s), 0, 0, 360, (150, 110, 95), -1,
                    cv2.LINE_AA)
        cv2.ellipse(layer, p(x, ey), p(0.095 * s, 0.05 * s), 0, 0, 360, (245, 245, 245), -1,
                    cv2.LINE_AA)
        cv2.circle(layer, p(x, ey), max(1, int(0.045 * s)), (30, 30, 30), -1, cv2.LINE_AA)
    nose = np.array([p(cx, ey + 0.02 * h), p(cx - 0.07 * s, cy + 0.12 * h),
                     p(cx + 0.07 * s, cy + 0.12 * h)], np.int32)
    cv2.polylines(layer, [nose], False, (160, 120, 100), max(1, int(0.02 * s)), cv2.LINE_AA)
    cv2.ellipse(layer, p(cx, cy + 0.26 * h), p(0.17 * s, 0.05 * s), 0, 0, 360, (150, 60, 60), -1,
                cv2.LINE_AA)
    if roll_deg:
        m = cv2.getRotationMatrix2D((float(cx), float(cy)), -roll_deg, 1.0)
        size = (img.shape[1], img.shape[0])
        layer = cv2.warpAffine(layer, m, size, flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(mask, m, size, flags=cv2.INTER_NEAREST)
    img[mask > 0] = layer[mask > 0]


def make_clip(
    path: str | Path,
    *,
    size: tuple[int, int] = (224, 224),
    fps: float = 25,
    duration_s: float = 2.0,
    face: tuple[float, float, float] | None = (0.5, 0.5, 0.36),
    motion_px: float = 0.0,
    roll_deg: float = 0.0,
    background: tuple[int, int, int] = (100, 110, 90),
    flash_s: float | None = None,
    beep_s: float | None = None,
    audio_s: float | None = None,
    sample_rate: int = 16000,
    noise_seed: int = 0,
) -> Path:
    """Write a test clip and return its path.

    ``size``: (width, height). ``face``: ``(cx, cy, width)`` as shares of the frame width/height
    (``None``: no face). ``motion_px``: amplitude of a slow circular head motion. ``flash_s``:
    time of a one-frame white flash of the background. ``beep_s``: onset of a 0.2 s 1 kHz tone
    burst (the rest is quiet noise). ``audio_s``: audio length (default: the video's; 0: no
    audio track).
    """
    from torchcodec.encoders import Encoder

    w, h = size
    n = max(1, int(round(duration_s * fps)))
    frames = np.empty((n, h, w, 3), np.uint8)
    flash = None if flash_s is None else int(math.floor(flash_s * fps + 1e-9))
    for i in range(n):
        img = frames[i]
        img[:] = (255, 255, 255) if i == flash else background
        if face is not None:
            a = 2 * math.pi * i / max(n, 1)
            draw_face(img, face[0] * w + motion_px * math.cos(a),
                      face[1] * h + motion_px * math.sin(a), face[2] * w, roll_deg)
    enc = Encoder()
    vs = enc.add_video(height=h, width=w, frame_rate=fps, codec="libx264", preset="ultrafast",
                       crf=20, extra_options={"threads": "1"})
    a_len = duration_s if audio_s is None else audio_s
    aus = enc.add_audio(sample_rate=sample_rate, num_channels=1) if a_len > 0 else None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with enc.open_file(str(path)):
        vs.add_frames(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous())
        if aus is not None:
            m = int(round(a_len * sample_rate))
            rng = np.random.default_rng(noise_seed)
            wave = 0.01 * rng.standard_normal(m).astype(np.float32)
            if beep_s is not None:
                b0 = int(round(beep_s * sample_rate))
                b1 = min(m, b0 + int(0.2 * sample_rate))
                t = np.arange(b1 - b0) / sample_rate
                wave[b0:b1] += 0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
            aus.add_samples(torch.from_numpy(wave)[None])
    return path
