"""The clip-store Dataset: shapes, sampling, alignment, determinism, seeding, transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
from torch.utils.data import DataLoader

from avfmae.data import video_transforms as vt
from avfmae.data.augment_spec import parse_rand_augment
from avfmae.data.audio_features import FBANK_MEAN, FBANK_STD, log_mel, samples_for_frames
from avfmae.data.clips import ClipDataset, load_split, load_store, seed_worker
from avfmae.preprocess.media import FaceVideoWriter, write_wav

FPS, SR, S = 25, 16000, 160


def _level(i: int) -> int:
    return 10 + 3 * i  # frame i is a flat gray of this level (i < 75)


def _write_clip(store: Path, cid: str, n: int, beep_frame: int | None) -> dict:
    frames = np.empty((n, S, S, 3), np.uint8)
    for i in range(n):
        frames[i] = _level(i)
    frames[:, :20, :20] = (255, 0, 0)  # a red corner, to see flips and crops
    with FaceVideoWriter(store / "faces" / f"{cid}.mp4", S, FPS, crf=18, preset="ultrafast",
                         gop=50) as w:
        w.add(frames)
    wave = np.zeros(n * SR // FPS, np.float32)
    if beep_frame is not None:
        b0 = beep_frame * SR // FPS
        t = np.arange(len(wave) - b0) / SR
        wave[b0:] = 0.3 * np.sin(2 * np.pi * 700 * t)
    write_wav(store / "audio" / f"{cid}.wav", (wave * 32767).astype(np.int16), SR)
    return {"clip_id": cid, "n_frames": n, "fps": float(FPS), "duration_s": n / FPS}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store")
    (store / "faces").mkdir()
    (store / "audio").mkdir()
    rows = [
        {**_write_clip(store, "long", 75, beep_frame=40), "label": 2, "t_valence": 0.5,
         "t_arousal": -0.25, "dataset": "toy", "subject": "a"},
        {**_write_clip(store, "short", 30, beep_frame=None), "label": 1, "t_valence": 0.1,
         "t_arousal": 0.2, "dataset": "toy", "subject": "b"},
        {**_write_clip(store, "mid", 70, beep_frame=10), "label": 0, "t_valence": 0.0,
         "t_arousal": 0.0, "dataset": "toy", "subject": "c"},
    ]
    man = pd.DataFrame(rows)
    man["video"] = "elsewhere.mp4"  # load_store resolves paths inside the store
    man["audio"] = "elsewhere.wav"
    man.to_csv(store / "manifest.csv", index=False)
    return store


def _frame_ids(video: torch.Tensor) -> list[int]:
    """Recover each frame's index from its (normalised) gray level, centre pixel."""
    mean = torch.tensor(vt.IMAGENET_MEAN).view(3, 1)
    std = torch.tensor(vt.IMAGENET_STD).view(3, 1)
    px = video[:, :, 80, 80] * std + mean  # (3, T)
    return [int(round((float(v) * 255 - 10) / 3)) for v in px.mean(0)]


def test_shapes_and_dtypes(store):
    rows = load_store(store)
    for mode in ("pretrain", "train", "eval"):
        ds = ClipDataset(rows, mode, num_windows=3)
        item = ds[0]
        w = (3,) if mode == "eval" else ()
        assert item["video"].shape == (*w, 3, 16, 160, 160) and item["video"].dtype == torch.float32
        assert item["audio"].shape == (*w, 1, 256, 128) and item["audio"].dtype == torch.float32
        assert item["frames"].shape == (*w, 16) and item["frames"].dtype == torch.int64
        assert item["label"].dtype == torch.int64 and int(item["label"]) == 2
        assert item["target"].dtype == torch.float32
        assert item["target"].tolist() == [0.5, -0.25]  # t_valence, t_arousal (column order)
        assert int(item["index"]) == 0 and item["clip_id"] == "long" and item["dataset"] == "toy"
        assert torch.isfinite(item["video"]).all() and torch.isfinite(item["audio"]).all()
    batch = next(iter(DataLoader(ClipDataset(rows, "train", targets=()), batch_size=3)))
    assert batch["video"].shape == (3, 3, 16, 160, 160) and batch["target"].shape == (3, 0)
    assert batch["clip_id"] == ["long", "short", "mid"]


def test_eval_windows_are_fixed_and_decode_the_right_frames(store):
    rows = load_store(store)
    ds = ClipDataset(rows, "eval", num_windows=2)
    a = ds[0]
    ds.set_epoch(5)
    b = ClipDataset(rows, "eval", num_windows=2, seed=123)[0]
    for k in ("video", "audio", "frames"):
        assert torch.equal(a[k], ds[0][k]) and torch.equal(a[k], b[k])
    # 75 frames, windows of 64: starts 0 and 11, every 4th frame
    assert a["frames"].tolist() == [list(range(0, 64, 4)), list(range(11, 75, 4))]
    for w in range(2):
        assert _frame_ids(a["video"][w]) == a["frames"][w].tolist()
    one = ClipDataset(rows, "eval", num_windows=1)[0]
    assert one["frames"].tolist() == [list(range(5, 69, 4))]  # centred
    short = ds[1]  # 30 frames: the window repeats the last frame
    assert short["frames"][0].tolist() == [min(i, 29) for i in range(0, 64, 4)]
    assert _frame_ids(short["video"][0]) == short["frames"][0].tolist()


def test_audio_segment_is_aligned_with_the_window(store):
    rows = load_store(store)
    item = ClipDataset(rows, "eval", num_windows=2)[0]  # beep starts at frame 40
    for w, start in enumerate((0, 11)):
        energy = item["audio"][w, 0].mean(1)  # (256,) per 10 ms frame
        onset = int(torch.nonzero(energy > energy.min() + 0.5)[0])
        assert abs(onset - (40 - start) * 4) <= 2  # 4 filterbank frames per video frame
    # past the end of the WAV the waveform is padded with silence (not log-mel zeros)
    short = ClipDataset(rows, "eval", num_windows=1)[1]["audio"][0, 0]
    silence = float(short[-1].mean())
    assert silence < (0 - FBANK_MEAN) / (2 * FBANK_STD) - 0.5


def test_train_sampling_is_seeded_by_seed_epoch_and_index(store):
    rows = load_store(store)
    ds = ClipDataset(rows, "train", seed=7)
    ds.set_epoch(3)
    a = ds[2]
    again = ClipDataset(rows, "train", seed=7)
    again.set_epoch(3)
    b = again[2]
    for k in ("video", "audio", "frames"):
        assert torch.equal(a[k], b[k])
    ds.set_epoch(4)
    assert not torch.equal(ds[2]["video"], a["video"])
    other = ClipDataset(rows, "train", seed=8)
    other.set_epoch(3)
    assert not torch.equal(other[2]["video"], a["video"])
    # random gain is on only in training
    ev = ClipDataset(rows, "eval", num_windows=1)
    assert ev[2]["audio"].shape == (1, 1, 256, 128)


def test_training_augmentations_can_be_switched_off(store):
    """RandAugment, random erasing and the random crop are knobs (``finetune.<stage>``); with all
    three off and no flip, a training clip is the resized, normalised frames of its window."""
    rows = load_store(store)
    plain = ClipDataset(rows, "train", seed=7, rand_augment=None, reprob=0.0, min_crop_area=1.0,
                        flip=False)
    frames = np.random.default_rng(0).integers(0, 256, (16, 120, 90, 3), dtype=np.uint8)
    expected = vt.to_normalized(vt.resize(frames, plain.input_size))
    assert torch.equal(plain._video(frames, np.random.default_rng(1)), expected)
    published = ClipDataset(rows, "train", seed=7)
    assert not torch.allclose(published._video(frames, np.random.default_rng(1)), expected)


def _batches(ds: ClipDataset, workers: int, epochs: list[int], persistent: bool = False):
    loader = DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers,
                        worker_init_fn=seed_worker, persistent_workers=persistent)
    out = []
    for e in epochs:
        ds.set_epoch(e)
        out.append([(b["video"].clone(), b["audio"].clone(), b["frames"].clone()) for b in loader])
    return out


def test_same_samples_whatever_the_number_of_workers(store):
    rows = load_store(store)
    mk = lambda: ClipDataset(rows, "pretrain", seed=1)  # noqa: E731
    ref = _batches(mk(), 0, [0, 1])
    par = _batches(mk(), 2, [0, 1], persistent=True)  # set_epoch reaches persistent workers
    for e in range(2):
        for (v0, a0, f0), (v1, a1, f1) in zip(ref[e], par[e]):
            assert torch.equal(v0, v1) and torch.equal(a0, a1) and torch.equal(f0, f1)
    assert not torch.equal(ref[0][0][0], ref[1][0][0])  # epochs differ


def _with_threads(n: int, fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def test_samples_do_not_depend_on_the_thread_count(store):
    """Loader workers run one thread, the training process (num_workers 0) all cores: samples
    must agree, or ``*.num_workers`` would not be result-neutral (avfmae/pipeline.py)."""
    wave = 0.1 * np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    assert torch.equal(_with_threads(2, lambda: log_mel(wave)),
                       _with_threads(1, lambda: log_mel(wave)))
    assert _with_threads(2, lambda: (log_mel(wave), torch.get_num_threads())[1]) == 2
    rows = load_store(store)
    augmented = dict(rand_augment="rand-m7-n4-mstd0.5-inc1", reprob=0.25, min_crop_area=0.08)
    for mode, kw in (("pretrain", {}), ("train", augmented), ("eval", {})):
        ds = ClipDataset(rows, mode, seed=3, **kw)
        two, one = (_with_threads(n, lambda: [ds[i] for i in range(len(ds))]) for n in (2, 1))
        for a, b in zip(two, one):
            assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])


def test_load_split_selects_fold_and_part_and_drops_rejected(store, tmp_path):
    splits = pd.DataFrame({
        "clip_id": ["long", "short", "mid", "gone", "long", "short", "mid"],
        "fold": [1, 1, 1, 1, 2, 2, 2],
        "part": ["train", "test", "train", "train", "test", "train", "val"],
    })
    splits.to_csv(tmp_path / "splits.csv", index=False)
    tr = load_split(store, tmp_path / "splits.csv", 1, "train")
    assert tr["clip_id"].tolist() == ["long", "mid"]  # "gone" was rejected by preprocessing
    assert tr["video"].tolist() == [str(store / "faces/long.mp4"), str(store / "faces/mid.mp4")]
    assert load_split(store, tmp_path / "splits.csv", 2, "val")["clip_id"].tolist() == ["mid"]
    with pytest.raises(ValueError, match="fold 3"):
        load_split(store, tmp_path / "splits.csv", 3, "train")
    with pytest.raises(ValueError, match="part"):
        load_split(store, tmp_path / "splits.csv", 1, "dev")


def test_fbank_matches_kaldi_and_pads_with_silence():
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(samples_for_frames(256))).astype(np.float32)
    ours = log_mel(wave)
    x = torch.from_numpy(wave - wave.mean())[None]
    ref = kaldi.fbank(x, htk_compat=True, sample_frequency=16000, use_energy=False,
                      window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    assert ours.shape == (256, 128) and torch.allclose(ours, ref, atol=1e-5)
    short = wave[:16000]
    pad_wave = log_mel(short)
    pad_fb = log_mel(short, pad="fbank")
    assert torch.allclose(pad_wave[:90], pad_fb[:90], atol=1e-4)
    assert (pad_fb[120:] == 0).all() and (pad_wave[120:] < -10).all()


def test_rand_augment_ops_keep_shape_and_are_reproducible():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    for op in vt.RAND_AUGMENT_OPS:
        a = vt.apply_op(op, clip, 0.7, np.random.default_rng(1))
        b = vt.apply_op(op, clip, 0.7, np.random.default_rng(1))
        assert a.shape == clip.shape and a.dtype == np.uint8 and np.array_equal(a, b), op
        if op not in ("Equalize", "AutoContrast"):  # no-ops on a full-range random image
            assert not np.array_equal(a, clip), op
    # the same op parameters for every frame: identical frames stay identical
    same = np.repeat(clip[:1], 4, 0)
    out = vt.rand_augment(same, np.random.default_rng(3), parse_rand_augment("rand-m9-n6"))
    assert all(np.array_equal(out[0], f) for f in out)
    spec = parse_rand_augment("rand-m7-n4-mstd0.5-inc1")
    assert (spec.magnitude, spec.num_ops, spec.mstd, spec.increasing) == (7.0, 4, 0.5, True)


def test_crops_flip_erasing():
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (4, 160, 160, 3), dtype=np.uint8)
    assert vt.multi_scale_crop(clip, rng, 160).shape == (4, 160, 160, 3)
    assert vt.random_resized_crop(clip, rng, 112).shape == (4, 112, 112, 3)
    assert np.array_equal(vt.hflip(clip), clip[:, :, ::-1])
    norm = vt.to_normalized(clip)
    assert norm.shape == (3, 4, 160, 160)
    expect = (clip[1, 5, 7, 2] / 255 - vt.IMAGENET_MEAN[2]) / vt.IMAGENET_STD[2]
    assert abs(float(norm[2, 1, 5, 7]) - expect) < 1e-5
    erased = vt.random_erasing(norm.clone(), np.random.default_rng(0), p=1.0)
    changed = [(erased[:, t] != norm[:, t]).any().item() for t in range(4)]
    assert all(changed)
