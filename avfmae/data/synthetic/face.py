"""Rendering of an animated synthetic face that a real face detector accepts.

The head is drawn once per clip as a shaded layer (skin with sphere-like lighting, darker eye
sockets, bright nose bridge, nostril and under-nose shadows, hair, ears) over a static background
(textured wall, neck, shoulders). Each frame copies that layer, draws the moving features (eyes
with eyelids and blinks, brows, mouth with lips, teeth and jaw drop, smile folds, frown furrows)
in head coordinates, then moves the whole head (sway, nod, tilt) with one affine warp and
composites it over the background.

Coordinates: ``u`` runs across the face in face half-widths ``a`` (− = image left), ``v`` down
the face in half-heights ``b`` (−1 = top of the skull, +1 = chin). The light/dark layout (eyes
darker than the cheeks below and the bridge between them, a dark mouth line under a bright
nose) is what Haar-like face detectors key on; ``tests/test_synthetic.py`` checks that OpenCV's
frontal-face cascade finds every clip's face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .classes import FacePattern
from .identity import Identity

__all__ = ["FaceTrack", "FaceRenderer", "face_track"]

_SHIFT = 4  # fractional bits of cv2 drawing coordinates
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame animation of one clip (arrays of length ``n_frames``).

    ``expression`` is the face pattern's intensity (0 = rest, 1 = apex) with an onset → apex time
    course; ``jaw`` the speech-driven mouth opening (0..1); ``eyelid`` the eyelid opening (1 =
    open, 0 = closed in a blink); ``sway`` the slow head motion (dx, dy as shares of the frame side,
    roll in degrees); ``roll_sign`` the side the head tilts to at apex (the speaker's habit).
    """

    expression: np.ndarray
    jaw: np.ndarray
    eyelid: np.ndarray
    sway: np.ndarray
    roll_sign: float


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def face_track(
    rng: np.random.Generator, n_frames: int, fps: float, jaw: np.ndarray, sway: float,
    roll_sign: float = 1.0,
) -> FaceTrack:
    """Draw a clip's expression time course, blinks and head sway.

    ``jaw`` is the speech articulation sampled at the frame times (from ``voice.py``), ``sway``
    the face pattern's motion amplitude, ``roll_sign`` the side the head tilts to.
    """
    t = np.arange(n_frames) / fps
    duration = n_frames / fps
    onset = rng.uniform(0.05, 0.25) * duration
    rise = rng.uniform(0.15, 0.3) * duration
    release = rng.uniform(0.0, 0.15)  # partial relaxation towards the end
    apex = rng.uniform(0.9, 1.0)
    expression = apex * _smoothstep((t - onset) / rise)
    expression *= 1 - release * _smoothstep((t - 0.85 * duration) / (0.15 * duration))

    eyelid = np.ones(n_frames)
    blink_t = rng.uniform(0.3, 1.2)
    while blink_t < duration:
        # a blink closes over ~60 ms, stays ~40 ms, opens over ~100 ms
        closed = np.interp(t - blink_t, [-0.06, 0.0, 0.04, 0.14], [1.0, 0.05, 0.05, 1.0],
                           left=1.0, right=1.0)
        eyelid = np.minimum(eyelid, closed)
        blink_t += rng.uniform(1.5, 4.0)

    sway_xy = np.zeros((n_frames, 3))
    for k, amp in enumerate((0.008, 0.006, 1.5)):
        for _ in range(2):
            freq = rng.uniform(0.15, 0.6)
            phase = rng.uniform(0, 2 * np.pi)
            sway_xy[:, k] += 0.5 * amp * sway * np.sin(2 * np.pi * freq * t + phase)
    return FaceTrack(
        expression=expression.astype(np.float32),
        jaw=np.clip(jaw, 0.0, 1.0).astype(np.float32),
        eyelid=eyelid.astype(np.float32),
        sway=sway_xy.astype(np.float32),
        roll_sign=float(roll_sign),
    )


def _blob(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    return np.exp(-0.5 * (((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def _over(rgb: np.ndarray, alpha: np.ndarray, colour: np.ndarray, a_new: np.ndarray) -> None:
    """Composite ``colour`` with coverage ``a_new`` over the (rgb, alpha) layer, in place."""
    a3 = a_new[..., None]
    rgb *= 1 - a3
    rgb += colour * a3
    alpha += a_new * (1 - alpha)


def _pts(xy: np.ndarray) -> np.ndarray:
    return np.round(xy * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _rgba(colour, scale: float = 1.0) -> tuple[float, float, float, float]:
    r, g, b = (float(c) * scale for c in colour[:3])
    return (r, g, b, 255.0)


_T12 = np.linspace(0.0, 1.0, 12)
_T8 = np.linspace(0.0, 1.0, 8)
_X13 = np.linspace(-1.08, 1.08, 13)
_P13 = np.clip(1 - _X13**2, 0, 1)
_X17 = np.linspace(-1.0, 1.0, 17)
_P17 = 1 - _X17**2
_X15 = np.linspace(-1.0, 1.0, 15)
_P15 = 1 - _X15**2


class FaceRenderer:
    """Draws the frames of one clip of one identity at ``size`` × ``size`` pixels."""

    def __init__(self, ident: Identity, size: int, rng: np.random.Generator):
        self.id = ident
        self.size = size
        self.a = ident.face_half_width * size
        self.b = self.a * ident.aspect
        self.cx = ident.center_x * size
        self.cy = ident.center_y * size
        self.background = self._background(rng)
        self.background_u8 = np.clip(self.background + 0.5, 0, 255).astype(np.uint8)
        rgb, alpha, self.gain = self._head(rng)
        # keep only the head's bounding box; features are drawn in its local coordinates
        ys, xs = np.nonzero(alpha > 0)
        self.ox, self.oy = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
        x1, y1 = min(int(xs.max()) + 3, size), min(int(ys.max()) + 3, size)
        a8 = np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8)
        self.head = np.dstack([rgb, a8])[self.oy : y1, self.ox : x1].copy()
        delta = self._cheek_delta[self.oy : y1, self.ox : x1]
        rows = np.nonzero(np.abs(delta).max(axis=(1, 2)) > 0.5)[0]
        cols = np.nonzero(np.abs(delta).max(axis=(0, 2)) > 0.5)[0]
        self.cheek_box = (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
        self.cheek_delta = np.ascontiguousarray(
            delta[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        del self._cheek_delta
        self.lcx, self.lcy = self.cx - self.ox, self.cy - self.oy
        self.brow_colour = _rgba(np.minimum(np.asarray(ident.hair) * 0.5, 55.0) + 5.0)
        self.skin = np.asarray(ident.skin, dtype=np.float32)

    # ------------------------------------------------------------------ static layers
    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        yy, xx = np.mgrid[0 : self.size, 0 : self.size].astype(np.float32) + 0.5
        return (xx - self.cx) / self.a, (yy - self.cy) / self.b

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        n = self.size
        ident = self.id
        # low-frequency blotches, mostly in brightness with a little colour, and fine grain
        coarse = rng.normal(size=(5, 5, 1)) + 0.25 * rng.normal(size=(5, 5, 3))
        texture = cv2.resize(coarse.astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(rng.normal(size=(n, n)).astype(np.float32), (0, 0), 1.0)
        ramp = np.linspace(1.08, 0.88, n, dtype=np.float32)[:, None, None]
        bg = np.asarray(ident.background, np.float32) * ramp
        bg = bg * (1 + ident.background_texture * (np.clip(texture, -2.5, 2.5)
                                                   + 0.5 * grain[..., None]))
        u, v = self._grid()
        # neck (shaded skin) and shoulders (clothes)
        neck_half = 0.5 * ident.jaw
        neck = np.clip((neck_half - np.abs(u)) * self.a / 1.2, 0, 1) * (v > 0.4)
        neck_shade = 0.62 + 0.12 * np.cos(np.clip(u / neck_half, -1, 1) * 1.4)
        bg = bg * (1 - neck[..., None]) + (self.skin_of(ident) * neck_shade[..., None]
                                           * neck[..., None])
        top = 1.0 + 0.12 * self.size / self.b
        su = 0.62 * self.size / self.a
        sv = 0.32 * self.size / self.b
        r = np.sqrt((u / su) ** 2 + ((v - top - sv) / sv) ** 2)
        body = np.clip((1 - r) * 0.5 * self.size / 1.5, 0, 1)
        shade = 0.7 + 0.3 * np.clip(1 - r, 0, 1) ** 0.5 - 0.1 * np.clip(u / su, -1, 1)
        clothes = np.asarray(ident.clothes, np.float32) * shade[..., None]
        bg = bg * (1 - body[..., None]) + clothes * body[..., None]
        return np.clip(bg, 0, 255).astype(np.float32)

    @staticmethod
    def skin_of(ident: Identity) -> np.ndarray:
        return np.asarray(ident.skin, dtype=np.float32)

    def _head(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ident = self.id
        u, v = self._grid()
        n = self.size
        rgb = np.zeros((n, n, 3), np.float32)
        alpha = np.zeros((n, n), np.float32)
        px = self.a / 1.2  # soft edge of about one pixel

        # hair texture: fine streaks plus lighting
        streak = cv2.GaussianBlur(rng.normal(size=(n, n)).astype(np.float32), (0, 0), 0.8)
        streak = cv2.resize(cv2.resize(streak, (n, n // 4)), (n, n))
        lx, ly = ident.light
        hair_light = np.clip(0.7 + 0.35 * (-u * lx - v * ly) / 1.3, 0.45, 1.15)
        hair = np.asarray(ident.hair, np.float32) * (hair_light * (1 + 0.18 * streak))[..., None]

        style = ident.hair_style
        if style == "long":
            r = np.sqrt((u / 1.2) ** 2 + ((v + 0.05) / 1.14) ** 2)
            curtain = (v > -0.1) & (v < 1.35) & (np.abs(u) < 1.28) & (np.abs(u) > 0.55)
            back = np.maximum(np.clip((1 - r) * px, 0, 1),
                              curtain * np.clip((1.28 - np.abs(u)) * px, 0, 1))
            _over(rgb, alpha, hair * 0.85, back)
        elif style == "bun":
            r = np.sqrt((u / 0.42) ** 2 + ((v + 1.08) / (0.42 * self.a / self.b)) ** 2)
            _over(rgb, alpha, hair * 0.9, np.clip((1 - r) * 0.42 * px, 0, 1))

        # ears
        for s in (-1.0, 1.0):
            r = np.sqrt(((u - s * 0.97) / 0.16) ** 2 + ((v - 0.02) / 0.2) ** 2)
            _over(rgb, alpha, self.skin_of(ident) * 0.78, np.clip((1 - r) * 0.16 * px, 0, 1))

        # face: egg-shaped outline with sphere-like shading and the detector-relevant shadows
        uu = u / (1 - (1 - ident.jaw) * np.clip(v, 0, 1))
        r = np.sqrt(uu**2 + v**2)
        face = np.clip((1 - r) * px, 0, 1)
        nz = np.sqrt(np.clip(1 - r**2, 0.03, 1))
        light = np.array([lx, ly, 0.85], np.float32)
        light /= np.linalg.norm(light)
        diffuse = np.clip((uu * light[0] + v * light[1] + nz * light[2])
                          / np.sqrt(uu**2 + v**2 + nz**2), 0, 1)
        gain = 0.42 + 0.66 * diffuse
        ey, nt, my = ident.eye_y, ident.nose_tip, ident.mouth_y
        for s in (-1.0, 1.0):
            gain -= 0.30 * _blob(u, v, s * ident.eye_x, ey - 0.02, 0.25, 0.12)  # eye sockets
            gain -= 0.10 * _blob(u, v, s * 0.15, nt - 0.08, 0.05, 0.13)  # nose sides
            gain -= 0.45 * _blob(u, v, s * 0.085, nt + 0.025, 0.04, 0.022)  # nostrils
            gain += 0.06 * _blob(u, v, s * 0.45, 0.22, 0.2, 0.14)  # cheeks
        gain += 0.12 * _blob(u, v, 0.0, (ey + nt) / 2, 0.075, 0.26)  # nose bridge
        gain += 0.06 * _blob(u, v, 0.0, nt - 0.04, 0.08, 0.05)  # nose tip
        gain -= 0.22 * _blob(u, v, 0.0, nt + 0.07, 0.17, 0.035)  # under the nose
        gain -= 0.10 * _blob(u, v, 0.0, my + 0.17, 0.22, 0.05)  # under the lower lip
        gain += 0.05 * _blob(u, v, 0.0, -0.55, 0.45, 0.2)  # forehead
        skin = self.skin_of(ident) * gain[..., None]
        _over(rgb, alpha, skin, face)
        # a smile's raised cheeks: highlights on the cheek "apples", shadow below them
        raise_ = np.zeros_like(gain)
        for s in (-1.0, 1.0):
            raise_ += 0.16 * _blob(u, v, s * 0.45, 0.16, 0.17, 0.1)
            raise_ -= 0.10 * _blob(u, v, s * 0.5, 0.36, 0.2, 0.055)
        self._cheek_delta = self.skin_of(ident) * (raise_ * face)[..., None]

        # hair over the forehead and temples
        brows = ident.eye_y - ident.brow_gap + ident.brow_offset
        hairline = brows - ident.forehead * (1.15 if style == "receding" else 1.0)
        v_line = np.minimum(hairline, -0.55) + 0.5 * u**2
        rh = np.sqrt((u / 1.07) ** 2 + ((v + 0.03) / 1.08) ** 2)
        top = np.clip((1 - rh) * px, 0, 1) * np.clip((v_line - v) * self.b / 1.5, 0, 1)
        _over(rgb, alpha, hair, top)
        return np.clip(rgb + 0.5, 0, 255).astype(np.uint8), alpha, gain

    # ------------------------------------------------------------------ per-frame features
    def _xy(self, u: np.ndarray | float, v: np.ndarray | float) -> np.ndarray:
        """Face coordinates → pixel coordinates of the cropped head layer."""
        return np.stack(np.broadcast_arrays(self.lcx + np.asarray(u) * self.a,
                                            self.lcy + np.asarray(v) * self.b), axis=-1)

    def _skin_at(self, u: float, v: float) -> np.ndarray:
        h, w = self.head.shape[:2]
        x = int(np.clip(self.lcx + u * self.a, 0, w - 1))
        y = int(np.clip(self.lcy + v * self.b, 0, h - 1))
        return self.head[y, x, :3]

    def _eye(self, img: np.ndarray, s: float, opening: float) -> None:
        ident = self.id
        ecx = self.lcx + s * ident.eye_x * self.a
        ecy = self.lcy + ident.eye_y * self.b
        ew = ident.eye_w * self.a
        eh = ew * 0.48 * opening
        if eh > 0.6:
            x0, y0 = int(ecx - ew) - 1, int(ecy - eh) - 1
            x1, y1 = int(ecx + ew) + 3, int(ecy + eh) + 3
            roi = img[y0:y1, x0:x1, :3]
            top = np.stack([ecx + _X15 * ew - x0, ecy - eh * _P15**0.8 - y0], -1)
            bottom = np.stack([ecx + _X15 * ew - x0, ecy + 0.72 * eh * _P15**0.9 - y0], -1)
            mask = np.zeros(roi.shape[:2], np.uint8)
            cv2.fillPoly(mask, [_pts(np.concatenate([top, bottom[::-1]]))], 255, cv2.LINE_AA,
                         _SHIFT)
            eye = np.empty(roi.shape, np.uint8)
            eye[:] = (204, 200, 195)
            ir = 0.46 * ew
            centre = (int(round((ecx - x0) * _ONE)), int(round((ecy + 0.1 * eh - y0) * _ONE)))
            cv2.circle(eye, centre, int(round(ir * _ONE)), ident.iris, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(eye, centre, int(round(0.45 * ir * _ONE)), (12, 12, 12), -1,
                       cv2.LINE_AA, _SHIFT)
            glint = (centre[0] - int(0.3 * ir * _ONE), centre[1] - int(0.3 * ir * _ONE))
            cv2.circle(eye, glint, int(round(0.14 * ir * _ONE)) + 8, (245, 245, 245), -1,
                       cv2.LINE_AA, _SHIFT)
            m = mask[..., None].astype(np.uint16)
            roi[:] = ((roi * (255 - m) + eye * m + 127) // 255).astype(np.uint8)
        # upper lid with lashes, lid crease, lower lid
        lid = np.stack([ecx + _X13 * ew, ecy - eh * _P13**0.8], axis=-1)
        thick = max(1, int(round(0.05 * self.a)))
        cv2.polylines(img, [_pts(lid)], False, (38, 28, 26, 255), thick, cv2.LINE_AA, _SHIFT)
        crease = np.stack([ecx + _X13 * ew * 0.9, ecy - (eh + 0.3 * ew) * _P13**0.7
                           - 0.05 * ew], axis=-1)
        skin = self._skin_at(s * ident.eye_x, ident.eye_y - 0.2)
        cv2.polylines(img, [_pts(crease)], False, _rgba(skin, 0.72), 1, cv2.LINE_AA, _SHIFT)
        low = np.stack([ecx + _X13[2:-2] * ew, ecy + 0.72 * eh * _P13[2:-2] ** 0.9 + 1], -1)
        cv2.polylines(img, [_pts(low)], False, _rgba(skin, 0.8), 1, cv2.LINE_AA, _SHIFT)

    def _brow(self, img: np.ndarray, s: float, raise_: float, knit: float) -> float:
        ident = self.id
        t = _T12
        u = s * (0.1 + 0.55 * t) - s * 0.06 * knit * (1 - t)
        arch = 0.07 * np.clip(1 - ((t - 0.6) / 0.65) ** 2, 0, 1)
        v = (ident.eye_y - ident.brow_gap + ident.brow_offset - raise_ - arch
             + 0.11 * knit * (1 - t) ** 1.5)
        half = 0.5 * ident.brow_thick * (1.15 - 0.55 * t) * self.a / self.b
        poly = np.concatenate([self._xy(u, v - half), self._xy(u, v + half)[::-1]])
        cv2.fillPoly(img, [_pts(poly)], self.brow_colour, cv2.LINE_AA, _SHIFT)
        return float(v[0])

    def _mouth(self, img: np.ndarray, width: float, curve: float, opening: float,
               teeth: float) -> None:
        ident = self.id
        mw = ident.mouth_w * width * self.a  # half-width in px
        y0 = self.lcy + ident.mouth_y * self.b
        o = opening * self.a
        xs, prof = _X17, _P17
        mid = y0 - curve * self.b * xs**2
        inner = 0.5 * o * prof**0.7
        thick = np.sqrt(prof) * self.a
        x = self.lcx + xs * mw
        outer = np.concatenate([np.stack([x, mid - inner - 0.055 * thick], -1),
                                np.stack([x, mid + inner + 0.075 * thick], -1)[::-1]])
        gy = int(min(self.cy + ident.mouth_y * self.b, self.size - 1))
        gain = float(self.gain[gy, int(min(self.cx, self.size - 1))])
        cv2.fillPoly(img, [_pts(outer)], _rgba(ident.lips, min(max(gain, 0.6), 1.05)),
                     cv2.LINE_AA, _SHIFT)
        if o > 0.8:
            hole = np.concatenate([np.stack([x, mid - inner], -1),
                                   np.stack([x, mid + inner], -1)[::-1]])
            cv2.fillPoly(img, [_pts(hole)], (52, 22, 26, 255), cv2.LINE_AA, _SHIFT)
            if teeth > 0.05:
                top = (mid - inner)[3:-3]
                band = np.concatenate([np.stack([x[3:-3], top], -1),
                                       np.stack([x[3:-3], top + 0.9 * teeth * inner[3:-3]],
                                                -1)[::-1]])
                cv2.fillPoly(img, [_pts(band)], (214, 208, 196, 255), cv2.LINE_AA, _SHIFT)
        cv2.polylines(img, [_pts(np.stack([x, mid], -1))], False, (60, 28, 30, 255),
                      max(1, int(round(0.03 * self.a))), cv2.LINE_AA, _SHIFT)

    def _folds(self, img: np.ndarray, strength: float, width: float, curve: float) -> None:
        ident = self.id
        t = _T8
        skin = self._skin_at(0.35, ident.nose_tip + 0.1)
        colour = _rgba(skin, 1 - 0.32 * strength)
        for s in (-1.0, 1.0):
            u = s * (0.2 + (ident.mouth_w * width + 0.04 - 0.2) * t + 0.07 * np.sin(np.pi * t))
            v = ident.nose_tip - 0.02 + (ident.mouth_y + 0.04 - curve - ident.nose_tip) * t
            cv2.polylines(img, [_pts(self._xy(u, v))], False, colour,
                          max(1, int(round(0.03 * self.a))), cv2.LINE_AA, _SHIFT)

    def _furrows(self, img: np.ndarray, strength: float, v_inner: float) -> None:
        colour = _rgba(self._skin_at(0.0, v_inner), 1 - 0.38 * strength)
        for s in (-1.0, 1.0):
            seg = self._xy(np.array([s * 0.06, s * 0.045]),
                           np.array([v_inner - 0.05, v_inner + 0.09]))
            cv2.polylines(img, [_pts(seg)], False, colour, max(1, int(round(0.025 * self.a))),
                          cv2.LINE_AA, _SHIFT)

    def frame(self, track: FaceTrack, i: int, pattern: FacePattern) -> np.ndarray:
        """Render frame ``i`` of ``track`` for ``pattern``: (size, size, 3) uint8 RGB."""
        ident = self.id
        e = float(track.expression[i]) * ident.expressiveness
        img = self.head.copy()
        opening = ident.eye_open * (1 + (pattern.eye_open - 1) * e) * float(track.eyelid[i])
        knit = pattern.brow_knit * e
        width = 1 + (pattern.mouth_width - 1) * e
        curve = ident.mouth_curve + pattern.mouth_curve * e
        if pattern.cheek > 0:
            r0, r1, c0, c1 = self.cheek_box
            roi = img[r0:r1, c0:c1, :3]
            roi[:] = np.clip(roi + self.cheek_delta * (pattern.cheek * e) + 0.5, 0, 255)
            self._folds(img, pattern.cheek * e, width, curve)
        v_inner = 0.0
        for s in (-1.0, 1.0):
            self._eye(img, s, opening)
            v_inner = self._brow(img, s, pattern.brow_raise * e, knit)
        if knit > 0.02:
            self._furrows(img, knit, v_inner)
        jaw = float(track.jaw[i]) * ident.articulation + pattern.mouth_open * e
        self._mouth(img, width, curve, jaw, teeth=pattern.cheek * e)

        # move the head: sway, nod (vertical shift and slight zoom) and tilt about the neck
        dx, dy, roll = (float(x) for x in track.sway[i])
        roll += pattern.head_roll * e * track.roll_sign
        pivot = (self.cx, self.cy + 0.9 * self.b)
        m = cv2.getRotationMatrix2D(pivot, roll, 1.0 + 0.4 * pattern.head_pitch * e)
        m[:, 2] += m[:, :2] @ np.array([self.ox, self.oy])
        m[0, 2] += dx * self.size
        m[1, 2] += dy * self.size + pattern.head_pitch * e * self.b
        h, w = img.shape[:2]
        corners = m @ np.array([[0, w, 0, w], [0, 0, h, h], [1, 1, 1, 1]], float)
        rx0, ry0 = (max(int(np.floor(c.min())) - 1, 0) for c in corners)
        rx1, ry1 = (min(int(np.ceil(c.max())) + 2, self.size) for c in corners)
        m[0, 2] -= rx0
        m[1, 2] -= ry0
        head = cv2.warpAffine(img, m, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # the head layer is premultiplied (composited over black), so: bg·(1−α) + head
        out = self.background_u8.copy()
        alpha = head[..., 3:4].astype(np.float32) * (1 / 255.0)
        bg = self.background[ry0:ry1, rx0:rx1]
        out[ry0:ry1, rx0:rx1] = np.clip(bg - bg * alpha + head[..., :3] + 0.5, 0, 255)
        return out
