"""``avfmae predict``: a fine-tuned model applied to one's own videos.

Each input video goes through the preprocess stage's per-clip code with the settings of the
model's training data (face track and crop, 16 kHz audio; read from the checkpoint's
:mod:`model card <avfmae.eval.model_card>`), then through evaluation's deterministic window
protocol and the model's head. A clip is seen as evenly spaced windows, the first at the start
and the last at the end, ``num_windows`` of them as in evaluation (so a clip of a test split
gets the evaluate stage's prediction); a video long enough that those windows would start more
than ``hop`` apart (by default one window's length: they would leave gaps) gets as many windows
as it takes to cover it at that spacing. The clip's
prediction averages its windows' class probabilities (or regression values, DEA), and every
window is kept as a timeline (start, end, probabilities).

Typical use::

    result = avfmae.predict(["my_videos/"], "models/finetune/synthetic/fold1")
    result.clips       # one row per input: prediction, probabilities, windows, face quality,
                       # or the reason it could not be processed
    result.timeline    # one row per window
    result.save(Path("predictions.csv"), plots=True)
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from avfmae.progress import progress as progress_bar

from avfmae.data.clips import ClipDataset
from avfmae.errors import UserError
from avfmae.eval.model_card import ModelCard, normalisation, read_model_card
from avfmae.io import atomic_write_text, pyplot, save_figure
from avfmae.preprocess.clip import ClipJob, ClipResult
from avfmae.preprocess.settings import Settings, fingerprint
from avfmae.preprocess.stage import execute_jobs, worker_count

__all__ = ["predict", "Predictions", "window_starts", "resolve_checkpoint", "collect_videos",
           "VIDEO_EXTENSIONS"]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ts")
STAGE_ORDER = ("s3", "s2", "s1")  # a run folder's model: its last stage


@dataclass
class Predictions:
    """What :func:`predict` returns.

    ``clips``: one row per input video, in input order — ``video``, ``status`` (``ok`` or
    ``skipped``), ``reason`` and ``detail`` (why a clip was skipped: the preprocess stage's
    reject reasons), ``predicted`` and ``prob_<label>`` (classification), ``value_<dim>`` (DEA
    regression) or ``predicted_<dim>`` and ``prob_<dim>_<level>`` (levelled DEA; ``predicted``
    then names every dimension's level, e.g. ``arousal=3 (p=0.41), valence=2 (p=0.55)``),
    ``windows``, and the preprocessing record (``face_rate``, ``box_jitter``, …).
    ``timeline``: one row per window of every predicted clip — ``video``, ``window``,
    ``start_s``, ``end_s`` and the same output columns. ``info``: the model and protocol.
    """

    clips: pd.DataFrame
    timeline: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def output_columns(self) -> list[str]:
        return [c for c in self.timeline.columns if c.startswith(("prob_", "value_"))]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: ``info`` plus one entry per clip with its timeline."""
        outputs = self.output_columns
        by_clip = {v: g for v, g in self.timeline.groupby("video", sort=False)}
        clips = []
        for row in self.clips.to_dict("records"):
            entry = {k: _plain(v) for k, v in row.items() if k not in outputs}
            windows = by_clip.get(row["video"])
            if row["status"] == "ok":
                entry["outputs"] = {c.split("_", 1)[1]: float(row[c]) for c in outputs}
                entry["timeline"] = [
                    {"start_s": float(w["start_s"]), "end_s": float(w["end_s"]),
                     "outputs": {c.split("_", 1)[1]: float(w[c]) for c in outputs}}
                    for w in windows.to_dict("records")]
            clips.append(entry)
        return {**self.info, "clips": clips}

    def save(self, out: str | Path, plots: bool = False) -> list[Path]:
        """Write ``out`` (CSV, one row per clip), ``<stem>.json``, ``<stem>.timeline.csv`` and
        with ``plots`` one PNG per predicted clip in ``<stem>.timeline/``; returns the paths."""
        out = Path(out)
        if out.suffix.lower() != ".csv":
            raise UserError(f"--out {out}: name a .csv file (the JSON and the timeline are "
                            "written beside it)")
        written = [
            atomic_write_text(out, self.clips.to_csv(index=False)),
            atomic_write_text(out.with_suffix(".json"),
                              json.dumps(self.to_json(), indent=2) + "\n"),
            atomic_write_text(out.with_name(f"{out.stem}.timeline.csv"),
                              self.timeline.to_csv(index=False)),
        ]
        if plots:
            folder = out.with_name(f"{out.stem}.timeline")
            for i, row in enumerate(self.clips.to_dict("records")):
                if row["status"] == "ok":
                    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(row["video"]).stem)
                    path = folder / f"{i:04d}-{name}.png"
                    written.append(plot_timeline(self, row["video"], path))
        return written


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ----------------------------------------------------------------------------------------------
# inputs, checkpoint, device
# ----------------------------------------------------------------------------------------------


def resolve_checkpoint(model: str | Path) -> Path:
    """A ``.safetensors`` file as is; a stage folder → its ``best.safetensors``; a fold folder
    (``models/finetune/<ds>/fold<k>``) → the best weights of its last stage."""
    path = Path(model)
    if path.is_file():
        return path
    if path.is_dir():
        for folder in (path, *(path / s for s in STAGE_ORDER)):
            if (folder / "best.safetensors").is_file():
                return folder / "best.safetensors"
        raise UserError(f"{path}: no best.safetensors here or in {'/, '.join(STAGE_ORDER)}/ "
                        "(pass a fine-tuned checkpoint or its run folder)")
    raise UserError(f"{path}: no such model file or folder")


def collect_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Input files as given (unreadable ones are recorded later, not refused here) and the
    video files under input folders (by extension, recursively, sorted); duplicates dropped."""
    videos: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise UserError(f"{path}: no video files here ({', '.join(VIDEO_EXTENSIONS)})")
            videos.update(dict.fromkeys(found))
        else:
            videos[path] = None
    if not videos:
        raise UserError("no input videos given")
    return list(videos)


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available here (use cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} CUDA "
                            "device(s) here")
    elif dev.type != "cpu":
        raise UserError(f"--device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def load_model(path: Path, card: ModelCard, device: torch.device) -> torch.nn.Module:
    """The classifier the card describes with every one of its tensors loaded from ``path``."""
    from avfmae.models import create_model
    from avfmae.train.checkpoint import load_weights

    m = card.model
    try:
        model = create_model(m["scale"], num_classes={card.head: card.outputs},
                             modality=m["modality"],
                             reference_compatible=m["reference_compatible"],
                             head_standardize=m.get("head_standardize", False),
                             **m["overrides"])
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: its model card describes a model this avfmae cannot build: "
                        f"{err}") from None
    state = load_weights(path)
    own = model.state_dict()
    missing = [k for k, v in own.items() if k not in state or state[k].shape != v.shape]
    if missing:
        raise UserError(f"{path}: {len(missing)} tensor(s) of the {m['scale']} model its card "
                        f"describes are missing or of another shape, e.g. {missing[:3]}")
    model.load_state_dict({k: state[k] for k in own})
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------
# windows
# ----------------------------------------------------------------------------------------------


def window_starts(n_frames: int, span: int, num_windows: int, hop: int) -> list[int]:
    """First frames of a clip's windows: evaluation's ``num_windows`` evenly spaced ones (first
    at 0, last at the end; one window → centred), or more when those would start more than
    ``hop`` frames apart, as many as it takes to start at most ``hop`` apart."""
    room = max(0, n_frames - span)
    w = num_windows if room <= hop else max(num_windows, math.ceil(room / hop) + 1)
    if w == 1:
        return [room // 2]
    return [int(round(i * room / (w - 1))) for i in range(w)]


class WindowDataset(ClipDataset):
    """One item per window: ``rows`` are face clips of the store layout (one row per clip),
    ``starts[i]`` the first frames of row ``i``'s windows. Items are evaluation items
    (deterministic, ``W = 1``) of the window's clip, with ``index`` the window's number."""

    def __init__(self, rows: pd.DataFrame, starts: Sequence[Sequence[int]], **geometry: Any):
        owner = [i for i, s in enumerate(starts) for _ in s]
        super().__init__(rows.iloc[owner].reset_index(drop=True), "eval", targets=(),
                         **{**geometry, "num_windows": 1})
        self.owner = owner
        self.starts = [int(s) for ss in starts for s in ss]
        self._current = 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._current = int(index)
        return super().__getitem__(index)

    def window_starts(self, n_frames: int, rng: np.random.Generator | None) -> list[int]:
        return [self.starts[self._current]]


@torch.no_grad()
def window_outputs(model: torch.nn.Module, data: WindowDataset, card: ModelCard, *,
                   batch_size: int, device: torch.device, num_workers: int,
                   progress: bool) -> np.ndarray:
    """``(N_windows, K)`` class probabilities (softmax) or regression outputs per window; a
    levelled model's ``(N_windows, D·L)`` level probabilities, a softmax per dimension."""
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=num_workers)
    outs = []
    with progress_bar(len(data), "predict", unit="window", disable=not progress) as bar:
        for batch in loader:
            video = batch["video"].flatten(0, 1).to(device)
            audio = batch["audio"].flatten(0, 1).to(device)
            out = model(video, audio, head=card.head).float()
            if not card.regression:
                out = out.view(len(out), -1, len(card.names)).softmax(-1).flatten(1)
            outs.append(out.cpu())
            bar.update(len(video))
    return torch.cat(outs).numpy() if outs else np.zeros((0, card.outputs), np.float32)


# ----------------------------------------------------------------------------------------------
# preprocessing (the preprocess stage's per-clip code and worker pool)
# ----------------------------------------------------------------------------------------------


def preprocess_videos(videos: Sequence[Path], card: ModelCard, work: Path, workers: int,
                      progress: bool) -> list[ClipResult]:
    """Face clip + WAV of every video in ``work``; one ``ClipResult`` per video, input order."""
    settings = preprocess_settings(card)
    for sub in ("faces", "audio"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    jobs = [ClipJob(clip_id=str(i), video=str(v), audio="",
                    face_out=str(work / "faces" / f"{i:06d}.mp4"),
                    wav_out=str(work / "audio" / f"{i:06d}.wav"))
            for i, v in enumerate(videos)]
    results: dict[str, ClipResult] = {}
    threads = torch.get_num_threads()  # the inline worker sets one thread for this process
    try:
        with progress_bar(len(jobs), "preprocess", unit="clip", disable=not progress) as bar:
            for job, res in execute_jobs(jobs, settings,
                                         min(worker_count(workers), len(jobs))):
                results[job.clip_id] = res
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
    return [results[j.clip_id] for j in jobs]


def preprocess_settings(card: ModelCard) -> Settings:
    """The training data's preprocessing settings; a warning names what differs here when
    this machine's fingerprint (libraries included) is not the training data's."""
    try:
        settings = Settings(**card.preprocess["settings"])
    except TypeError as err:
        raise UserError(f"the model card's preprocessing settings do not fit this avfmae: "
                        f"{err}") from None
    fp, desc = fingerprint(settings)
    if fp != card.preprocess["fingerprint"]:
        differ = _differences(card.preprocess["description"], desc)
        log.warning("preprocessing fingerprint %s differs from the model's training data (%s) "
                    "in %s: predictions may differ slightly from the evaluate stage's", fp,
                    card.preprocess["fingerprint"], ", ".join(differ) or "nothing named")
    return settings


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b))
                for d in _differences(a.get(k), b.get(k), f"{where}.{k}" if where else k)]
    return [] if a == b else [where]


# ----------------------------------------------------------------------------------------------
# the whole thing
# ----------------------------------------------------------------------------------------------


def predict(inputs: str | Path | Iterable[str | Path], model: str | Path, *,
            device: str = "auto", batch_size: int = 16, hop_s: float | None = None,
            workers: int = 0, progress: bool = True) -> Predictions:
    """Predict every video of ``inputs`` (files and folders) with the fine-tuned ``model``
    (a checkpoint, or its stage or fold folder).

    ``batch_size``: windows per forward pass (they mix clips). ``hop_s``: the most seconds
    between window starts before a long video gets more windows (default: one window's
    length, so that evaluation's windows are kept wherever they leave no gap).
    ``workers``: preprocessing (and window loading) processes, 0 = every core.
    """
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: must be at least 1")
    if hop_s is not None and not hop_s > 0:
        raise UserError(f"hop {hop_s} s: must be more than 0")
    checkpoint = resolve_checkpoint(model)
    card = read_model_card(checkpoint)
    if card.normalisation != normalisation():
        raise UserError(f"{checkpoint}: the model was trained with input normalisation "
                        f"{card.normalisation}, this avfmae applies {normalisation()}")
    dev = resolve_device(device)
    videos = collect_videos([inputs] if isinstance(inputs, (str, Path)) else inputs)
    net = load_model(checkpoint, card, dev)
    geometry = card.geometry
    fps = card.preprocess["settings"]["fps"]
    span = geometry["num_frames"] * geometry["sampling_rate"]
    hop = max(1, round(hop_s * fps)) if hop_s is not None else span
    with tempfile.TemporaryDirectory(prefix="avfmae-predict-") as tmp:
        results = preprocess_videos(videos, card, Path(tmp), workers, progress)
        ok = [i for i, r in enumerate(results) if r.ok]
        rows = pd.DataFrame({
            "clip_id": [results[i].clip_id for i in ok],
            "video": [str(Path(tmp) / "faces" / f"{i:06d}.mp4") for i in ok],
            "audio": [str(Path(tmp) / "audio" / f"{i:06d}.wav") for i in ok],
            "n_frames": [int(results[i].stats["n_frames"]) for i in ok],
            "fps": [float(fps)] * len(ok),
        })
        starts = [window_starts(n, span, geometry["num_windows"], hop) for n in rows["n_frames"]]
        data = WindowDataset(rows, starts, **geometry)
        loaders = worker_count(workers) if len(data) > batch_size else 0
        outputs = window_outputs(net, data, card, batch_size=batch_size, device=dev,
                                 num_workers=loaders if loaders > 1 else 0, progress=progress)
    timeline = _timeline(videos, ok, rows, data, outputs, card, span, fps)
    clips = _clip_table(videos, results, timeline, card)
    info = {"model": {"checkpoint": str(checkpoint), **card.task, **card.origin,
                      "scale": card.model["scale"], "modality": card.model["modality"]},
            "protocol": {"num_windows": geometry["num_windows"], "window_s": span / fps,
                         "hop_s": hop / fps, "fps": fps, "device": str(dev)},
            "preprocess_fingerprint": card.preprocess["fingerprint"]}
    skipped = Counter(r.reason for r in results if not r.ok)
    log.info("predicted %d of %d clip(s)%s", len(ok), len(videos),
             "; skipped: " + ", ".join(f"{k} {n}" for k, n in skipped.most_common())
             if skipped else "")
    return Predictions(clips, timeline, info)


def _output_names(card: ModelCard) -> list[str]:
    """``prob_<label>`` / ``value_<dim>``; a levelled model's ``prob_<dim>_<level>``."""
    if card.dimensions:
        return [f"prob_{d}_{n}" for d in card.dimensions for n in card.names]
    prefix = "value_" if card.regression else "prob_"
    return [prefix + n for n in card.names]


def _predicted(card: ModelCard, probs: np.ndarray) -> dict[str, str]:
    """A clip's ``predicted`` label; for a levelled model a level per dimension
    (``predicted_<dim>``) and ``predicted`` naming them all, e.g.
    ``arousal=3 (p=0.41), valence=2 (p=0.55)``."""
    if not card.dimensions:
        return {"predicted": card.names[int(np.argmax(probs))]}
    per_dim = probs.reshape(len(card.dimensions), len(card.names))
    best = per_dim.argmax(-1)
    text = ", ".join(f"{d}={card.names[b]} (p={p[b]:.2f})"
                     for d, b, p in zip(card.dimensions, best, per_dim))
    return {"predicted": text,
            **{f"predicted_{d}": card.names[b] for d, b in zip(card.dimensions, best)}}


def _timeline(videos: Sequence[Path], ok: list[int], rows: pd.DataFrame, data: WindowDataset,
              outputs: np.ndarray, card: ModelCard, span: int, fps: float) -> pd.DataFrame:
    n_frames = rows["n_frames"].to_numpy()[data.owner] if len(data) else np.zeros(0, int)
    starts = np.asarray(data.starts, dtype=np.int64)
    table = pd.DataFrame({
        "video": [str(videos[ok[o]]) for o in data.owner],
        "window": pd.Series(data.owner, dtype=np.int64).groupby(data.owner).cumcount(),
        "start_s": starts / fps,
        "end_s": np.minimum(starts + span, n_frames) / fps,
    })
    for j, name in enumerate(_output_names(card)):
        table[name] = outputs[:, j]
    return table


def _clip_table(videos: Sequence[Path], results: Sequence[ClipResult], timeline: pd.DataFrame,
                card: ModelCard) -> pd.DataFrame:
    names = _output_names(card)
    means = timeline.groupby("video", sort=False)[names].mean() if len(timeline) else None
    counts = timeline.groupby("video", sort=False).size() if len(timeline) else None
    records = []
    for video, res in zip(videos, results):
        rec: dict[str, Any] = {"video": str(video), "status": "ok" if res.ok else "skipped",
                               "reason": res.reason, "detail": res.detail}
        if res.ok:
            probs = means.loc[str(video)].to_numpy()
            if not card.regression:
                rec.update(_predicted(card, probs))
            rec.update(dict(zip(names, probs.tolist())))
            rec["windows"] = int(counts.loc[str(video)])
        rec.update(res.stats)
        records.append(rec)
    predicted = [] if card.regression else ["predicted",
                                            *(f"predicted_{d}" for d in card.dimensions)]
    head = ["video", "status", "reason", "detail", *predicted, *names, "windows"]
    table = pd.DataFrame.from_records(records)
    for col in head:
        if col not in table:
            table[col] = np.nan
    table = table[head + [c for c in table.columns if c not in head]]
    # skipped clips have no stats: keep integer counts integers next to their blanks
    counts = ["windows", *(k for k, v in _first_stats(results).items() if isinstance(v, int))]
    return table.astype({c: "Int64" for c in counts})


def _first_stats(results: Sequence[ClipResult]) -> dict[str, Any]:
    return next((r.stats for r in results if r.ok), {})


def plot_timeline(pred: Predictions, video: str, path: Path) -> Path:
    """One clip's window outputs over time (window centres), one line per class/dimension."""
    plt = pyplot()
    rows = pred.timeline[pred.timeline["video"] == video]
    centre = (rows["start_s"] + rows["end_s"]) / 2
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for col in pred.output_columns:
        ax.plot(centre, rows[col], marker="o", markersize=3, label=col.split("_", 1)[1])
    clip = pred.clips[pred.clips["video"] == video].iloc[0]
    regression = pred.output_columns[0].startswith("value_")
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("value" if regression else "probability")
    title = Path(video).name + ("" if regression else f": {clip['predicted']}")
    ax.set_title(f"{title} ({int(clip['windows'])} windows)")
    if not regression:
        ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return save_figure(fig, path)
