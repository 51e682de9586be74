"""Audio features (docs/model.md §1.4): the 128-bin kaldi log-mel filterbank of an aligned segment.

:func:`log_mel` computes ``torchaudio.compliance.kaldi.fbank`` with the published settings
(htk_compat, hanning window, no dither, 25 ms frames every 10 ms, no energy) and brings it to
``target_frames`` rows; :func:`normalize_fbank` applies the AudioSet statistics. Two padding
modes: ``"waveform"`` (default, docs/model.md F13) pads the *waveform* with silence before the
filterbank, so padded frames look like silence; ``"fbank"`` reproduces the published code,
which pads the log-mel matrix with zeros.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "samples_for_frames",
    "log_mel",
    "normalize_fbank",
]

FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0


def samples_for_frames(n_frames: int, sample_rate: int = 16000) -> int:
    """Waveform samples that give exactly ``n_frames`` filterbank frames (snip_edges)."""
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    hop = int(sample_rate * FRAME_SHIFT_MS / 1000)
    return win + (n_frames - 1) * hop


def log_mel(
    wave: np.ndarray | torch.Tensor,
    *,
    sample_rate: int = 16000,
    n_mels: int = 128,
    target_frames: int = 256,
    pad: str = "waveform",
) -> torch.Tensor:
    """Log-mel filterbank ``(target_frames, n_mels)`` of a mono float waveform.

    The waveform's mean is removed first (docs/model.md §1.4). ``pad='waveform'``: the waveform is
    zero-padded (or cut) to exactly ``target_frames`` frames before the filterbank;
    ``pad='fbank'``: the filterbank of the waveform as is, zero-padded/cut in the log domain.

    Computed on one thread: torch's parallel reductions round differently with the thread
    count, so the features, and every result trained on them, would otherwise depend on whether
    a loader worker (one thread) or the training process (all cores) computed them.
    """
    with _one_thread():
        return _log_mel(wave, sample_rate, n_mels, target_frames, pad)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _log_mel(wave: np.ndarray | torch.Tensor, sample_rate: int, n_mels: int,
             target_frames: int, pad: str) -> torch.Tensor:
    x = torch.as_tensor(wave, dtype=torch.float32).reshape(1, -1)
    if x.shape[1]:
        x = x - x.mean()
    need = samples_for_frames(target_frames, sample_rate)
    if pad == "waveform":
        if x.shape[1] < need:
            x = torch.nn.functional.pad(x, (0, need - x.shape[1]))
        x = x[:, :need]
    elif pad != "fbank":
        raise ValueError(f"pad must be 'waveform' or 'fbank', got {pad!r}")
    win = int(sample_rate * FRAME_LENGTH_MS / 1000)
    if x.shape[1] < win:  # kaldi needs one full window
        x = torch.nn.functional.pad(x, (0, win - x.shape[1]))
    fb = kaldi.fbank(
        x,
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=n_mels,
        dither=0.0,
        frame_shift=FRAME_SHIFT_MS,
        frame_length=FRAME_LENGTH_MS,
    )
    n = fb.shape[0]
    if n < target_frames:
        fb = torch.nn.functional.pad(fb, (0, 0, 0, target_frames - n))
    return fb[:target_frames]


def normalize_fbank(fb: torch.Tensor) -> torch.Tensor:
    """AudioSet normalisation ``(x − mean) / (2·std)``."""
    return (fb - FBANK_MEAN) / (2 * FBANK_STD)
