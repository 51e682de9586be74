"""The training-time torch Dataset over the clip store (``data/processed/{ds}``).

Typical use::

    rows = load_split(store, splits_csv, fold=1, part="train")
    ds = ClipDataset(rows, "train", seed=0)
    loader = DataLoader(ds, batch_size=8, shuffle=..., num_workers=2,
                        worker_init_fn=seed_worker, persistent_workers=True)
    for epoch in range(epochs):
        ds.set_epoch(epoch)      # before iterating; works with persistent workers too
        for batch in loader: ...

Temporal sampling (docs/model.md §1.2): ``num_frames`` frames ``sampling_rate`` apart, i.e. a
window of ``num_frames * sampling_rate`` frames (64 = 2.56 s at 25 fps); train/pretrain draw the
window start uniformly, eval takes ``num_windows`` evenly spaced windows (first at 0, last at the
end; one window → centred). Frames past the end repeat the last frame. Audio: the WAV span starting
at the window's first frame (the store aligns sample 0 with frame 0), 2.575 s → exactly 256
filterbank frames, silence past the end.

Randomness: each sample's generator is seeded from ``(seed, epoch, index)``, so a sample depends
on nothing else — not on the worker that makes it, nor on ``num_workers``. Eval mode draws
nothing (docs/model.md F8): no random crop, flip, erasing or gain.
"""

from __future__ import annotations

import ctypes
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import pandas as pd
import soundfile as sf
import torch
from torch.utils.data import Dataset

from .audio_features import log_mel, normalize_fbank, samples_for_frames
from .augment_spec import parse_rand_augment
from .video_transforms import (
    hflip,
    multi_scale_crop,
    rand_augment,
    random_erasing,
    random_resized_crop,
    resize,
    to_normalized,
)

__all__ = [
    "ClipDataset", "load_store", "load_split", "seed_worker", "prepare_process", "tune_allocator",
    "Mode",
]

Mode = Literal["pretrain", "train", "eval"]
PARTS = ("train", "val", "test")


def load_store(store: str | Path) -> pd.DataFrame:
    """The processed manifest of a clip store, ``video``/``audio`` resolved inside ``store``."""
    store = Path(store)
    path = store / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no clip store here; run `avfmae preprocess` first")
    df = pd.read_csv(path, dtype={"clip_id": str, "subject": str, "dataset": str})
    df["video"] = [str(store / "faces" / f"{c}.mp4") for c in df["clip_id"]]
    df["audio"] = [str(store / "audio" / f"{c}.wav") for c in df["clip_id"]]
    return df


def load_split(store: str | Path, splits_csv: str | Path, fold: int, part: str) -> pd.DataFrame:
    """Rows of the clip store in ``part`` ('train' | 'val' | 'test') of 1-based ``fold``.

    Clips of the split that preprocessing rejected are left out (they are listed in the
    store's ``rejects.csv``); the row order follows ``splits.csv``.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    rows = load_store(store)
    splits = pd.read_csv(splits_csv, dtype={"clip_id": str})
    if fold not in set(splits["fold"]):
        raise ValueError(f"{splits_csv}: no fold {fold} (folds: {sorted(set(splits['fold']))})")
    sel = splits[(splits["fold"] == fold) & (splits["part"] == part)][["clip_id"]]
    return sel.merge(rows, on="clip_id", how="inner").reset_index(drop=True)


_PREPARED: int | None = None  # pid of the process prepare_process() last ran in


def prepare_process() -> None:
    """Per-process set-up for making samples, run by the first ``__getitem__`` of a process.

    OpenCV gets one thread (parallelism is across loader workers). Inside a DataLoader
    worker, glibc's malloc is also told to keep freed memory (no mmap for blocks below
    256 MiB, no trimming): every sample allocates several MB, and returning them to the kernel
    each time costs page faults worth ~2× the whole transform time.
    """
    global _PREPARED
    _PREPARED = os.getpid()
    cv2.setNumThreads(1)
    if torch.utils.data.get_worker_info() is not None:
        tune_allocator()


def tune_allocator() -> None:
    """Keep freed memory in this process's heap (glibc ``mallopt``; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1024 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python/NumPy global RNGs per worker.

    ClipDataset itself never uses global RNGs (its samples depend on seed, epoch and index
    only); this keeps any other library code in the worker distinct per worker and
    reproducible from the loader's base seed (torch's own RNG is already seeded that way).
    """
    s = torch.initial_seed() % 2**32  # base_seed + worker_id, set by the DataLoader
    random.seed(s)
    np.random.seed(s)


class ClipDataset(Dataset):
    """Clips of the store as model inputs.

    Args:
        rows: processed-manifest rows (from :func:`load_store` / :func:`load_split`); needs
            ``clip_id``, ``video``, ``audio``; uses ``n_frames``, ``fps``, ``label``,
            ``dataset`` and the target columns when present.
        mode: ``'pretrain'`` (random window, multi-scale crop), ``'train'`` (random window,
            RandAugment, random resized crop + flip, random erasing, random gain) or
            ``'eval'`` (``num_windows`` fixed windows, resize only; fully deterministic).
        targets: float target columns (DEA) returned as ``target``; ``"auto"`` = every
            ``t_<dim>`` column of ``rows``; ``()`` = none.
        audio_pad: ``'waveform'`` (silence past the end, default) or ``'fbank'`` (the published
            zero padding of the log-mel matrix).

    Each item is a dict (``W = num_windows``, ``T = num_frames``, ``S = input_size``):

    =============  ==========================================  ==============================
    key            pretrain / train                            eval
    =============  ==========================================  ==============================
    ``video``      float32 ``(3, T, S, S)``, ImageNet-normed   float32 ``(W, 3, T, S, S)``
    ``audio``      float32 ``(1, 256, 128)`` (time, mel)       float32 ``(W, 1, 256, 128)``
    ``label``      int64 ``()``; −1 when unlabeled             same
    ``target``     float32 ``(K,)``, K = len(targets) (0 ok);  same
                   NaN where the row has no value
    ``frames``     int64 ``(T,)`` frame indices used           int64 ``(W, T)``
    ``index``      int64 ``()`` position in ``rows``           same
    ``clip_id``    str                                         same
    ``dataset``    str (``""`` when the column is absent)      same
    =============  ==========================================  ==============================

    ``mode='train'`` applies, in order: resize to S², RandAugment ``rand_augment`` (same ops on
    every frame; ``None`` = off), random resized crop (area share ``min_crop_area``–1, ratio
    3/4–4/3) + horizontal flip (p 0.5), ImageNet normalisation, pixel random erasing (p ``reprob``
    per frame); audio gets a random gain Beta(10, 10) + 0.5. ``'pretrain'``: multi-scale crop
    (scales 1/.875/.75/.66, 13 fixed offsets), normalisation, random gain. ``'eval'``: resize +
    normalisation only.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        mode: Mode,
        *,
        num_frames: int = 16,
        sampling_rate: int = 4,
        input_size: int = 160,
        num_windows: int = 2,
        audio_frames: int = 256,
        n_mels: int = 128,
        sample_rate: int = 16000,
        seed: int = 0,
        targets: Sequence[str] | Literal["auto"] = "auto",
        rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1",
        reprob: float = 0.25,
        min_crop_area: float = 0.08,
        flip: bool = True,
        gain_aug: bool = True,
        audio_pad: Literal["waveform", "fbank"] = "waveform",
    ):
        if mode not in ("pretrain", "train", "eval"):
            raise ValueError(f"mode must be 'pretrain', 'train' or 'eval', got {mode!r}")
        missing = {"clip_id", "video", "audio"} - set(rows.columns)
        if missing:
            raise ValueError(f"rows lack column(s) {sorted(missing)}")
        self.rows = rows.reset_index(drop=True)
        self.mode = mode
        self.num_frames = num_frames
        self.sampling_rate = sampling_rate
        self.input_size = input_size
        self.num_windows = num_windows
        self.audio_frames = audio_frames
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.seed = seed
        if targets == "auto":
            targets = [c for c in self.rows.columns if c.startswith("t_")]
        self.targets = list(targets)
        self.ra = parse_rand_augment(rand_augment) if rand_augment else None
        self.reprob = reprob
        self.min_crop_area = min_crop_area
        self.flip = flip
        self.gain_aug = gain_aug
        self.audio_pad = audio_pad
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._clip_ids = self.rows["clip_id"].astype(str).tolist()
        self._videos = self.rows["video"].astype(str).tolist()
        self._audios = self.rows["audio"].astype(str).tolist()
        self._n = (
            self.rows["n_frames"].astype(int).tolist() if "n_frames" in self.rows else None
        )
        self._fps = self.rows["fps"].astype(float).tolist() if "fps" in self.rows else None
        self._labels = (
            self.rows["label"].fillna(-1).astype(int).tolist() if "label" in self.rows else None
        )
        self._dataset = (
            self.rows["dataset"].astype(str).tolist() if "dataset" in self.rows else None
        )
        self._targets = (
            self.rows[self.targets].to_numpy(np.float32) if self.targets else None
        )

    # -- epoch / randomness ----------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random draws (shared memory: reaches persistent workers)."""
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __len__(self) -> int:
        return len(self.rows)

    # -- sampling ----------------------------------------------------------------------------

    @property
    def span(self) -> int:
        """Frames one window covers (``num_frames × sampling_rate``)."""
        return self.num_frames * self.sampling_rate

    def window_starts(self, n_frames: int, rng: np.random.Generator | None) -> list[int]:
        """First frame of each window: one random start, or ``num_windows`` fixed ones."""
        room = max(0, n_frames - self.span)
        if rng is not None:
            return [int(rng.integers(0, room + 1))]
        w = self.num_windows
        if w == 1:
            return [room // 2]
        return [int(round(i * room / (w - 1))) for i in range(w)]

    def frame_indices(self, start: int, n_frames: int) -> np.ndarray:
        idx = start + self.sampling_rate * np.arange(self.num_frames)
        return np.minimum(idx, n_frames - 1)

    # -- decoding ----------------------------------------------------------------------------

    def _open_video(self, path: str):
        """A torchcodec decoder: it made more clips per second than decord on the same clips
        (``benchmarks/bench_loader.py --decoders``, docs/speed.md). One FFmpeg thread, since
        parallelism is across loader workers."""
        from torchcodec.decoders import VideoDecoder

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return VideoDecoder(path, dimension_order="NHWC", num_ffmpeg_threads=1,
                                seek_mode="approximate")

    def _decode(self, reader, indices: np.ndarray) -> np.ndarray:
        """uint8 ``(len(indices), H, W, 3)`` for the (possibly repeated) frame indices."""
        uniq, inv = np.unique(indices, return_inverse=True)
        frames = reader.get_frames_at(uniq.tolist()).data.numpy()
        if len(uniq) == len(indices) and np.array_equal(uniq, indices):
            return frames
        return frames[inv.reshape(-1)]

    def _n_frames(self, i: int, reader) -> int:
        n = len(reader)
        return min(n, self._n[i]) if self._n is not None else n

    def _wave(self, i: int, start_frame: int) -> np.ndarray:
        """Mono float32 WAV samples from ``start_frame``'s time, enough for the filterbank."""
        fps = self._fps[i] if self._fps is not None else 25.0
        a0 = int(round(start_frame * self.sample_rate / fps))
        need = samples_for_frames(self.audio_frames, self.sample_rate)
        wave, sr = sf.read(self._audios[i], start=a0, stop=a0 + need, dtype="float32",
                           always_2d=True)
        if sr != self.sample_rate:
            raise ValueError(f"{self._audios[i]}: {sr} Hz, expected {self.sample_rate}")
        return wave.mean(1) if wave.shape[1] > 1 else wave[:, 0]

    def _fbank(self, wave: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        """``(1, audio_frames, n_mels)`` normalised log-mel; random gain in training."""
        if rng is not None and self.gain_aug:
            wave = (wave - wave.mean()) * np.float32(rng.beta(10.0, 10.0) + 0.5)
        fb = log_mel(wave, sample_rate=self.sample_rate, n_mels=self.n_mels,
                     target_frames=self.audio_frames, pad=self.audio_pad)
        return normalize_fbank(fb).unsqueeze(0)

    # -- transforms --------------------------------------------------------------------------

    def _video(self, frames: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        """uint8 ``(T, H, W, 3)`` → float32 ``(3, T, S, S)``."""
        s = self.input_size
        if self.mode == "pretrain":
            return to_normalized(multi_scale_crop(frames, rng, s))
        if self.mode == "train":
            x = resize(frames, s)
            if self.ra is not None:
                x = rand_augment(x, rng, self.ra)
            x = random_resized_crop(x, rng, s, scale=(self.min_crop_area, 1.0))
            if self.flip and rng.random() < 0.5:
                x = hflip(x)
            v = to_normalized(x)
            if self.reprob > 0:
                v = random_erasing(v, rng, self.reprob)
            return v
        return to_normalized(resize(frames, s))

    # -- items -------------------------------------------------------------------------------

    def enable_profiling(self) -> dict[str, float]:
        """Accumulate CPU seconds per step (open, decode, video, audio_read, fbank) from now on
        in the returned dict (this thread only; used by ``benchmarks/bench_loader.py``)."""
        self._prof = {k: 0.0 for k in ("open", "decode", "video", "audio_read", "fbank")}
        return self._prof

    _prof: dict[str, float] | None = None

    def _tick(self, name: str, t0: float) -> float:
        if self._prof is None:
            return 0.0
        t1 = time.thread_time()
        self._prof[name] += t1 - t0
        return t1

    def __getitem__(self, index: int) -> dict[str, Any]:
        if _PREPARED != os.getpid():
            prepare_process()
        i = int(index)
        t = time.thread_time() if self._prof is not None else 0.0
        rng = None if self.mode == "eval" else self.rng(i)
        reader = self._open_video(self._videos[i])
        n = self._n_frames(i, reader)
        t = self._tick("open", t)
        starts = self.window_starts(n, rng)
        idx = np.stack([self.frame_indices(s0, n) for s0 in starts])
        frames = self._decode(reader, idx.reshape(-1))
        frames = frames.reshape(len(starts), self.num_frames, *frames.shape[1:])
        t = self._tick("decode", t)
        videos = [self._video(frames[w], rng) for w in range(len(starts))]
        t = self._tick("video", t)
        waves = [self._wave(i, s0) for s0 in starts]
        t = self._tick("audio_read", t)
        audios = [self._fbank(w, rng) for w in waves]
        self._tick("fbank", t)
        item: dict[str, Any] = {
            "label": torch.tensor(self._labels[i] if self._labels is not None else -1,
                                  dtype=torch.int64),
            "target": torch.from_numpy(self._targets[i].copy()) if self._targets is not None
            else torch.zeros(0, dtype=torch.float32),
            "index": torch.tensor(i, dtype=torch.int64),
            "clip_id": self._clip_ids[i],
            "dataset": self._dataset[i] if self._dataset is not None else "",
        }
        if self.mode == "eval":
            item["video"] = torch.stack(videos)
            item["audio"] = torch.stack(audios)
            item["frames"] = torch.from_numpy(idx.astype(np.int64))
        else:
            item["video"] = videos[0]
            item["audio"] = audios[0]
            item["frames"] = torch.from_numpy(idx[0].astype(np.int64))
        return item
