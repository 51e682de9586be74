"""Every frame of a written clip as RGB, for the tests that look at what preprocessing wrote."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avfmae.preprocess.media import frame_times, frames_shown_at, probe_video


def rgb_frames(path: str | Path) -> np.ndarray:
    """The clip's frames at its own rate → RGB ``(n, H, W, 3)`` uint8 (BT.601, video range)."""
    info = probe_video(path)
    return np.stack([cv2.cvtColor(f, cv2.COLOR_YUV2RGB_I420)
                     for f in frames_shown_at(path, frame_times(info, info.fps), info)])
