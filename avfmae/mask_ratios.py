"""Which pretraining mask ratios fit the LG windows: checked when ``params.yaml`` is loaded, so
this module imports nothing heavy (the mask generators live in :mod:`avfmae.masking`).

A ratio must give an integral number of visible (encoder) or masked (decoder) tokens per window;
:func:`allowed_ratios` lists the allowed values of each field.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from avfmae.errors import ConfigError

__all__ = ["RATIO_TOL", "allowed_ratios", "validate_ratios"]

RATIO_TOL = 1e-6

# field → (denominator, smallest numerator, largest numerator, why)
RATIO_RULES: dict[str, tuple[int, int, int, str]] = {
    "mask_ratio_video": (
        50, 1, 49,
        "the visible count per 5×10 half-face window of each slice must be a whole number "
        "(1 - k/50)",
    ),
    "mask_ratio_audio": (
        16, 1, 15,
        "the visible count per 4×4 audio window must be a whole number (1 - k/16)",
    ),
    "decoder_mask_ratio_video": (
        4, 0, 3,
        "running-cell masking masks a whole number of each 2×2 cell (k/4)",
    ),
    "decoder_mask_ratio_audio": (
        128, 0, 127,
        "a whole number of the 128 audio tokens, and at least one decoded (k/128)",
    ),
}


def allowed_ratios(field: str) -> list[float]:
    """The allowed values of a :class:`PretrainConfig` mask-ratio field, ascending.

    Encoder ratios must leave an integral, non-zero visible count per LG window (video
    ``1 - k/50``, audio ``1 - k/16``; the published rank-chunk partition needs the same values);
    decoder ratios ``k/4`` (video running cell) and ``k/128`` (audio), with at least one decoded
    position.
    """
    den, lo, hi, _ = RATIO_RULES[field]
    return sorted(float(Fraction(k, den)) for k in range(lo, hi + 1))


def validate_ratios(cfg: Any, where: str = "pretrain") -> None:
    """Reject mask ratios that do not divide the LG windows; raises ``ConfigError``.

    ``cfg`` is a :class:`PretrainConfig`; the message names the dotted key (``where.field``),
    the rule and the nearest allowed values. Call from ``load_params``.
    """
    for field, (_den, _lo, _hi, why) in RATIO_RULES.items():
        value = float(getattr(cfg, field))
        allowed = allowed_ratios(field)
        if any(abs(value - a) <= RATIO_TOL for a in allowed):
            continue
        below = [a for a in allowed if a < value]
        above = [a for a in allowed if a > value]
        near = ([f"{below[-1]:g}"] if below else []) + ([f"{above[0]:g}"] if above else [])
        raise ConfigError(
            f"{where}.{field}: {value!r} is not allowed; {why}. Nearest allowed: "
            f"{' or '.join(near)}. All allowed: {', '.join(f'{a:g}' for a in allowed)}"
        )
