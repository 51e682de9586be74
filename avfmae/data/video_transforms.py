"""Clip-level video transforms (docs/model.md §1.3).

Clips are uint8 NumPy arrays ``(T, H, W, 3)`` (RGB) until :func:`to_normalized` turns them into
the model's float32 ``(3, T, H, W)`` tensor; all uint8 work runs through OpenCV, one frame or one
look-up table at a time (a clip of 16 160² frames costs a few ms, several times less than
torchvision's tensor ops).

Every random transform draws its parameters once per clip from a ``numpy.random.Generator``
and applies them to all frames alike (random erasing is the exception: it is drawn per frame,
as in the published code). Nothing touches a global RNG, so a sample is a pure function of the
generator's seed.

- :func:`multi_scale_crop` — pretraining's GroupMultiScaleCrop (fixed grid of 13 offsets).
- :func:`rand_augment` — RandAugment ``rand-m7-n4-mstd0.5-inc1`` (timm's op set, level→argument
  rules and PIL semantics), same ops for every frame. Rotate/shear interpolate bilinearly
  (bicubic costs 3× more for no benefit at this size); translations move whole pixels.
- :func:`random_resized_crop`, :func:`hflip`, :func:`random_erasing` — fine-tune training.
- :func:`resize`, :func:`to_normalized` — resizing and ImageNet normalisation.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from .augment_spec import RandAugmentSpec

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "resize",
    "crop_resize",
    "to_normalized",
    "multi_scale_crop",
    "rand_augment",
    "RAND_AUGMENT_OPS",
    "apply_op",
    "random_resized_crop",
    "hflip",
    "random_erasing",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FILL = tuple(round(255 * m) for m in IMAGENET_MEAN)  # timm's fill colour for geometric ops
_SCALE = torch.tensor([1 / (255 * s) for s in IMAGENET_STD]).view(3, 1, 1, 1)
_SHIFT = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]).view(3, 1, 1, 1)


def crop_resize(frames: np.ndarray, x0: int, y0: int, cw: int, ch: int, size: int) -> np.ndarray:
    """Crop ``[y0:y0+ch, x0:x0+cw]`` of every frame and resize it to ``size²`` (bilinear)."""
    if (cw, ch) == (size, size):
        return np.ascontiguousarray(frames[:, y0 : y0 + ch, x0 : x0 + cw])
    out = np.empty((len(frames), size, size, frames.shape[-1]), np.uint8)
    for i, f in enumerate(frames):
        cv2.resize(f[y0 : y0 + ch, x0 : x0 + cw], (size, size), dst=out[i],
                   interpolation=cv2.INTER_LINEAR)
    return out


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to ``size × size`` (aspect not kept; a no-op when already that size)."""
    h, w = frames.shape[1:3]
    if (h, w) == (size, size):
        return frames
    return crop_resize(frames, 0, 0, w, h, size)


def to_normalized(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` → float32 ``(3, T, H, W)``, scaled to [0, 1], ImageNet-normalised."""
    t, h, w, _ = frames.shape
    planes = np.empty((3, t, h, w), np.uint8)
    for i, f in enumerate(frames):
        cv2.split(np.ascontiguousarray(f), [planes[0, i], planes[1, i], planes[2, i]])
    out = torch.empty((3, t, h, w), dtype=torch.float32)
    out.copy_(torch.from_numpy(planes))  # uint8 → float32 (mixed-dtype arithmetic is 5× slower)
    return out.mul_(_SCALE).add_(_SHIFT)


# ----------------------------------------------------------------------------------------------
# pretraining: multi-scale crop
# ----------------------------------------------------------------------------------------------


def _fixed_offsets(w: int, h: int, cw: int, ch: int, more: bool) -> list[tuple[int, int]]:
    ws, hs = (w - cw) // 4, (h - ch) // 4
    offs = [(0, 0), (4 * ws, 0), (0, 4 * hs), (4 * ws, 4 * hs), (2 * ws, 2 * hs)]
    if more:
        offs += [
            (0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 4 * hs), (2 * ws, 0),
            (ws, hs), (3 * ws, hs), (ws, 3 * hs), (3 * ws, 3 * hs),
        ]
    return offs


def multi_scale_crop(
    frames: np.ndarray,
    rng: np.random.Generator,
    size: int,
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    more_fix_crop: bool = True,
) -> np.ndarray:
    """Crop one (w, h) pair of scale × short side at one of 13 fixed offsets; resize to ``size``."""
    h, w = frames.shape[1:3]
    base = min(h, w)
    sizes = [int(base * s) for s in scales]
    opts = [size if abs(x - size) < 3 else x for x in sizes]
    pairs = [
        (cw, ch)
        for i, ch in enumerate(opts)
        for j, cw in enumerate(opts)
        if abs(i - j) <= max_distort
    ]
    cw, ch = pairs[rng.integers(len(pairs))]
    cw, ch = min(cw, w), min(ch, h)
    offs = _fixed_offsets(w, h, cw, ch, more_fix_crop)
    x0, y0 = offs[rng.integers(len(offs))]
    return crop_resize(frames, x0, y0, cw, ch, size)


# ----------------------------------------------------------------------------------------------
# fine-tune training: RandAugment shared across frames
# ----------------------------------------------------------------------------------------------


def _signed(rng: np.random.Generator, v: float) -> float:
    return -v if rng.random() < 0.5 else v


def _lut(frames: np.ndarray, table: np.ndarray) -> np.ndarray:
    t, h, w, c = frames.shape
    x = np.ascontiguousarray(frames).reshape(t * h, w, c)
    return cv2.LUT(x, table.astype(np.uint8)).reshape(t, h, w, c)


def _warp(frames: np.ndarray, m: np.ndarray) -> np.ndarray:
    """PIL-style affine (``m`` maps output → input pixel), bilinear, fill colour outside."""
    h, w = frames.shape[1:3]
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        cv2.warpAffine(f, m, (w, h), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=_FILL)
    return out


def _per_frame_lut(frames: np.ndarray, tables: list[np.ndarray]) -> np.ndarray:
    """Apply one ``(256, 3)`` look-up table per frame."""
    out = np.empty_like(frames)
    for i, (f, table) in enumerate(zip(frames, tables)):
        cv2.LUT(np.ascontiguousarray(f), np.ascontiguousarray(table, np.uint8).reshape(256, 1, 3),
                dst=out[i])
    return out


def _autocontrast(frames: np.ndarray) -> np.ndarray:
    """PIL ImageOps.autocontrast (cutoff 0), per frame and channel."""
    v = np.arange(256, dtype=np.float64)
    tables = []
    for f in frames:
        table = np.empty((256, 3))
        for c, ch in enumerate(cv2.split(np.ascontiguousarray(f))):
            lo, hi = cv2.minMaxLoc(ch)[:2]
            if hi <= lo:
                table[:, c] = v
            else:
                scale = 255.0 / (hi - lo)
                table[:, c] = np.clip((v - lo) * scale, 0, 255)
        tables.append(table.astype(np.uint8))
    return _per_frame_lut(frames, tables)


def _equalize(frames: np.ndarray) -> np.ndarray:
    """PIL ImageOps.equalize, per frame and channel."""
    tables = []
    for f in frames:
        f = np.ascontiguousarray(f)
        table = np.empty((256, 3), np.int64)
        for c in range(3):
            h = cv2.calcHist([f], [c], None, [256], [0, 256]).ravel().astype(np.int64)
            nz = h[h > 0]
            step = (int(h.sum()) - int(nz[-1])) // 255 if len(nz) else 0
            if step == 0:
                table[:, c] = np.arange(256)
            else:
                cum = np.concatenate([[0], np.cumsum(h)[:-1]])
                table[:, c] = (cum + step // 2) // step
        tables.append(np.clip(table, 0, 255).astype(np.uint8))
    return _per_frame_lut(frames, tables)


def _color(frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance.Color: blend with the frame's grayscale version."""
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        f = np.ascontiguousarray(f)
        gray = cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        cv2.addWeighted(f, factor, gray, 1.0 - factor, 0.0, dst=out[i])
    return out


def _contrast(frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL ImageEnhance.Contrast: blend with the frame's mean gray level."""
    v = np.arange(256, dtype=np.float64)
    tables = []
    for f in frames:
        mean = int(cv2.mean(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY))[0] + 0.5)
        t = np.clip(mean + factor * (v - mean) + 0.5, 0, 255).astype(np.uint8)
        tables.append(np.repeat(t[:, None], 3, 1))
    return _per_frame_lut(frames, tables)


def _translate(frames: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift content by ``(-dx, -dy)`` whole pixels (PIL affine offset semantics), fill outside."""
    dx, dy = int(round(dx)), int(round(dy))
    t, h, w, c = frames.shape
    out = np.empty_like(frames)
    np.copyto(out, np.full((h, w, c), _FILL, np.uint8)[None])
    if abs(dx) >= w or abs(dy) >= h:
        return out
    def span(d: int, n: int) -> tuple[slice, slice]:  # (source, destination) along one axis
        return (slice(d, n), slice(0, n - d)) if d >= 0 else (slice(0, n + d), slice(-d, n))

    src_x, dst_x = span(dx, w)
    src_y, dst_y = span(dy, h)
    out[:, dst_y, dst_x] = frames[:, src_y, src_x]
    return out


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0


def _sharpness(frames: np.ndarray, factor: float) -> np.ndarray:
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        smooth = cv2.filter2D(f, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
        smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = f[0], f[-1], f[:, 0], f[:, -1]
        cv2.addWeighted(f, factor, smooth, 1.0 - factor, 0.0, dst=out[i])
    return out


def apply_op(name: str, frames: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """One RandAugment op at ``level`` ∈ [0, 1] (magnitude / 10) with timm's argument rules."""
    h, w = frames.shape[1:3]
    v = np.arange(256)
    if name == "AutoContrast":
        return _autocontrast(frames)
    if name == "Equalize":
        return _equalize(frames)
    if name == "Invert":
        return _lut(frames, 255 - v)
    if name == "Posterize":  # increasing: fewer bits with more magnitude
        bits = max(1, 4 - int(4 * level))
        return _lut(frames, v & (0xFF << (8 - bits)) & 0xFF)
    if name == "Solarize":  # increasing: lower threshold with more magnitude
        thr = 256 - int(256 * level)
        return _lut(frames, np.where(v < thr, v, 255 - v))
    if name == "SolarizeAdd":
        add = int(110 * level)
        return _lut(frames, np.where(v < 128, np.minimum(v + add, 255), v))
    if name == "Brightness":
        f = 1.0 + _signed(rng, 0.9 * level)
        return _lut(frames, np.clip(v * f + 0.5, 0, 255))
    if name == "Contrast":
        return _contrast(frames, 1.0 + _signed(rng, 0.9 * level))
    if name == "Color":
        return _color(frames, 1.0 + _signed(rng, 0.9 * level))
    if name == "Sharpness":
        return _sharpness(frames, 1.0 + _signed(rng, 0.9 * level))
    if name == "Rotate":
        ang = _signed(rng, 30.0 * level)
        m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), -ang, 1.0)
        return _warp(frames, m)
    if name == "ShearX":
        return _warp(frames, np.array([[1, _signed(rng, 0.3 * level), 0], [0, 1, 0]], float))
    if name == "ShearY":
        return _warp(frames, np.array([[1, 0, 0], [_signed(rng, 0.3 * level), 1, 0]], float))
    if name == "TranslateXRel":
        return _translate(frames, _signed(rng, 0.45 * level) * w, 0.0)
    if name == "TranslateYRel":
        return _translate(frames, 0.0, _signed(rng, 0.45 * level) * h)
    raise KeyError(name)


RAND_AUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)


def rand_augment(frames: np.ndarray, rng: np.random.Generator, spec: RandAugmentSpec
                 ) -> np.ndarray:
    """RandAugment on uint8 ``(T, H, W, 3)``: ``num_ops`` ops (drawn with replacement), each
    applied with probability ``prob`` at magnitude ~ N(m, mstd) clipped to [0, 10], the same for
    every frame."""
    x = frames
    for k in rng.integers(len(RAND_AUGMENT_OPS), size=spec.num_ops):
        if rng.random() > spec.prob:
            continue
        m = spec.magnitude
        if spec.mstd > 0:
            m = rng.normal(m, spec.mstd)
        level = float(np.clip(m, 0.0, 10.0)) / 10.0
        x = apply_op(RAND_AUGMENT_OPS[k], x, level, rng)
    return x


# ----------------------------------------------------------------------------------------------
# fine-tune training: random resized crop, flip, random erasing
# ----------------------------------------------------------------------------------------------


def random_resized_crop(
    frames: np.ndarray,
    rng: np.random.Generator,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Inception-style crop (area share ``scale``, log-uniform aspect ``ratio``), one per clip."""
    h, w = frames.shape[1:3]
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ar = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            break
    else:  # central crop at the nearest allowed aspect
        in_r = w / h
        if in_r < ratio[0]:
            cw, ch = w, int(round(w / ratio[0]))
        elif in_r > ratio[1]:
            ch, cw = h, int(round(h * ratio[1]))
        else:
            cw, ch = w, h
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    return crop_resize(frames, x0, y0, cw, ch, size)


def hflip(frames: np.ndarray) -> np.ndarray:
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        cv2.flip(np.ascontiguousarray(f), 1, dst=out[i])
    return out


def random_erasing(
    video: torch.Tensor,
    rng: np.random.Generator,
    p: float = 0.25,
    area: tuple[float, float] = (0.02, 1 / 3),
    log_ratio: tuple[float, float] = (math.log(0.3), math.log(1 / 0.3)),
) -> torch.Tensor:
    """Pixel-mode random erasing of a normalised ``(3, T, H, W)`` clip, drawn per frame
    (in place)."""
    c, t, h, w = video.shape
    for i in range(t):
        if rng.random() >= p:
            continue
        for _ in range(10):
            a = h * w * rng.uniform(*area)
            ar = math.exp(rng.uniform(*log_ratio))
            eh, ew = int(round(math.sqrt(a * ar))), int(round(math.sqrt(a / ar)))
            if ew < w and eh < h:
                y0 = int(rng.integers(0, h - eh + 1))
                x0 = int(rng.integers(0, w - ew + 1))
                noise = rng.standard_normal((c, eh, ew), dtype=np.float32)
                video[:, i, y0 : y0 + eh, x0 : x0 + ew] = torch.from_numpy(noise)
                break
    return video
