"""A linear probe of frozen encoders: how separable the affect patterns are in each modality's
features on held-out speakers, pretrained weights against random initialisation.

Per fold of a dataset: the features of every clip from the video encoder alone and from the
audio encoder alone (the classifier's head input for that modality, test-time windows
averaged), a multinomial logistic regression fitted on the fold's training clips (features
standardised on them, classes balanced, a fixed L2 penalty: nothing is searched, so the test
split selects nothing) and its UAR on the fold's test clips, whose speakers it never saw.
Targets: the dataset's labels and, for the embedded ``synthetic`` set, its two factors (the
face pattern, which video alone can tell, and the voice pattern, which audio alone can tell).
A third column probes the encoders' input itself, area-averaged to a small grid: what a linear
model finds without any encoder, the bar an encoder's features should clear. A second table
probes each depth of the encoders (the mean patch embedding, then each block's region tokens):
where along the encoder pretraining gains or loses what the head's input shows.

Writes ``metrics/probe.json`` and ``reports/probe.md`` (paths in
:data:`avfmae.pipeline.PROBE_OUTPUTS`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from avfmae.config import Params
from avfmae.errors import UserError
from avfmae.eval.inference import eval_dataset
from avfmae.eval.metrics import uar
from avfmae.io import atomic_write_text
from avfmae.machine import describe_machine
from avfmae.models.build import build_classifier
from avfmae.models.loading import load_pretrained_encoder
from avfmae.pipeline import PRETRAIN_ENCODER, PROBE_OUTPUTS
from avfmae.tasks import Task, split_rows, task_of
from avfmae.train.checkpoint import load_weights

__all__ = ["MODALITIES", "PENALTY", "fit_probe", "probe", "probe_targets"]

log = logging.getLogger(__name__)

MODALITIES = ("video", "audio")
#: L2 penalty on the standardised features' weights (fixed: choosing it would need a split)
PENALTY = 1e-2
#: side of the grid the input is area-averaged to for the no-encoder column
INPUT_GRID = 40
#: target → modality → init → per depth, per fold UAR (None: no weights for that modality)
DepthUARs = dict[str, dict[str, dict[str, list[list[float]] | None]]]


def probe_targets(task: Task, labels: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Target name → (per-clip class index, number of classes) for clips labelled ``labels``."""
    targets = {"label": (labels, len(task.names))}
    if task.dataset == "synthetic":
        from avfmae.data.synthetic.classes import CLASSES

        by_name = {c.name: c for c in CLASSES}
        for factor in ("face_pattern", "voice_pattern"):
            values = [getattr(by_name[task.names[k]], factor) for k in labels]
            kinds = sorted(set(getattr(c, factor) for c in CLASSES))
            targets[factor] = (np.array([kinds.index(v) for v in values]), len(kinds))
    return targets


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, n_classes: int,
              x_test: np.ndarray) -> np.ndarray:
    """Fit the balanced, L2-penalised multinomial logistic regression on ``(N, C)`` features and
    predict the classes of ``x_test``; deterministic (full-batch L-BFGS in float64)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x = torch.from_numpy((x_train - mu) / sd)
    y = torch.from_numpy(y_train).long()
    counts = torch.bincount(y, minlength=n_classes).double()
    weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1)), 0.0)
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.cross_entropy(x @ w + b, y, weight=weight) + PENALTY * (w * w).sum()
        value.backward()
        return value

    opt.step(loss)
    with torch.no_grad():
        logits = torch.from_numpy((x_test - mu) / sd) @ w + b
    return logits.argmax(1).numpy()


def _windows(params: Params, rows: pd.DataFrame, task: Task,
             modality: str) -> Iterator[torch.Tensor]:
    """``(B, W, …)`` batches of one modality's evaluation windows of ``rows``, in row order."""
    loader = torch.utils.data.DataLoader(eval_dataset(params, rows, task),
                                         batch_size=params.eval.batch_size)
    return (batch[modality] for batch in loader)


@torch.no_grad()
def _features(params: Params, rows: pd.DataFrame, task: Task, modality: str,
              encoder: Path | None) -> dict[str, np.ndarray] | None:
    """Window-averaged ``(N, C)`` features of one modality's encoder by readout: ``head`` what
    the classifier's head reads, ``depth0`` the mean patch embedding, ``depth<d>`` the region
    tokens after block d (the encoder's LayerNorm, averaged over regions). ``None`` when
    ``encoder`` holds no weights for the modality (a unimodal pretraining of the other one)."""
    one = dataclasses.replace(params, finetune=dataclasses.replace(params.finetune,
                                                                   modality=modality))
    torch.manual_seed(params.finetune.seed)  # the same random initialisation every time
    model = build_classifier(one, {task.dataset: task.outputs}).eval()
    if encoder is not None:
        try:
            load_pretrained_encoder(model, load_weights(encoder))
        except ValueError:
            return None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    # the head's forward pass also computes the depths: keep what its encoder returns
    encoder_module = getattr(model, f"{modality}_encoder")
    seen: dict[str, torch.Tensor] = {}
    for key, module in (("embedding", encoder_module.patch_embed), ("blocks", encoder_module)):
        module.register_forward_hook(lambda _m, _in, y, key=key: seen.__setitem__(key, y))
    out: dict[str, list[np.ndarray]] = {}
    for x in _windows(params, rows, task, modality):
        x = x.to(device)
        b, n_windows = x.shape[:2]
        readouts = {"head": model.forward_features(**{modality: x.flatten(0, 1)}),
                    "depth0": seen["embedding"].mean(1)}
        by_block = seen["blocks"].mean(1)  # (B·W, depth, C)
        readouts.update((f"depth{d + 1}", by_block[:, d]) for d in range(by_block.shape[1]))
        for name, feats in readouts.items():
            out.setdefault(name, []).append(
                feats.view(b, n_windows, -1).mean(1).double().cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


@torch.no_grad()
def _input_features(params: Params, rows: pd.DataFrame, task: Task, modality: str) -> np.ndarray:
    """``(N, INPUT_GRID²)`` the modality's model input, averaged over windows and every axis but
    the last two (video: channels and frames; audio: its one channel), then area-averaged to an
    ``INPUT_GRID`` square (video frames H × W, fbank time × mel)."""
    out = []
    for x in _windows(params, rows, task, modality):
        plane = x.flatten(1, -3).mean(1, keepdim=True)  # (B, 1, H, W)
        out.append(F.adaptive_avg_pool2d(plane, INPUT_GRID).flatten(1).double().numpy())
    return np.concatenate(out)


def probe(params: Params, dataset: str | None = None, encoder: str | None = None) -> Path:
    """Probe the pretrained encoder (default: the pretrain stage's) and a random one on every
    fold of ``dataset`` (default: the first of ``data.datasets``); returns the report path."""
    dataset = dataset or params.data.datasets[0]
    task = task_of(params, dataset)
    if task.regression or task.levelled:
        raise UserError(f"{dataset}: the probe needs a categorical dataset (its labels are "
                        "classes), not a dimensional one")
    encoder_path = Path(encoder or PRETRAIN_ENCODER)
    if not encoder_path.is_file():
        raise UserError(f"{encoder_path} does not exist: run pretraining first "
                        "(`dvc repro pretrain`) or name an encoder with --encoder")
    folds = {k: {part: split_rows(params, dataset, k, part) for part in ("train", "test")}
             for k in params.data.folds}
    clips = pd.concat([r for parts in folds.values() for r in parts.values()])
    clips = clips.drop_duplicates("clip_id").reset_index(drop=True)
    position = {c: i for i, c in enumerate(clips["clip_id"])}
    splits = [tuple([position[c] for c in parts[part].clip_id] for part in ("train", "test"))
              for parts in folds.values()]
    targets = probe_targets(task, clips["label"].to_numpy())
    results: dict[str, dict[str, dict[str, list[float] | None]]] = {}
    by_depth: DepthUARs = {}
    for modality in MODALITIES:
        for init in ("input", "pretrained", "random"):
            log.info("probe: %s features of %d %s clips (%s)", modality, len(clips), dataset, init)
            feats = ({"head": _input_features(params, clips, task, modality)} if init == "input"
                     else _features(params, clips, task, modality,
                                    encoder_path if init == "pretrained" else None))
            for name, (y, n_classes) in targets.items():
                cell = results.setdefault(name, {}).setdefault(modality, {})
                cell[init] = None if feats is None else _fold_uars(feats["head"], y, n_classes,
                                                                   splits)
                if init != "input":
                    by_depth.setdefault(name, {}).setdefault(modality, {})[init] = (
                        None if feats is None else
                        [_fold_uars(feats[f"depth{d}"], y, n_classes, splits)
                         for d in range(len(feats) - 1)])
    return _write(params, dataset, encoder_path, list(folds), results, by_depth)


def _fold_uars(feats: np.ndarray, y: np.ndarray, n_classes: int,
               splits: list[tuple[list[int], list[int]]]) -> list[float]:
    """The probe's test UAR on each (train rows, test rows) split of ``feats``."""
    return [float(uar(y[test], fit_probe(feats[train], y[train], n_classes, feats[test]),
                      n_classes)) for train, test in splits]


def _cell(values: list[float] | None) -> str:
    if values is None:
        return "not pretrained"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def _write(params: Params, dataset: str, encoder: Path, folds: list[int],
           results: dict[str, dict[str, dict[str, list[float] | None]]],
           by_depth: DepthUARs) -> Path:
    machine = describe_machine("off")
    lines = ["# Linear probe of the frozen encoders", "",
             f"`avfmae probe` on `{dataset}`, folds {folds}: a logistic regression on each "
             "modality's frozen features, fitted on a fold's training speakers, test UAR on its "
             f"held-out speakers (mean ± std over folds). Pretrained: `{encoder}`; random: the "
             f"same architecture at `finetune.seed` {params.finetune.seed}; input: no encoder, "
             f"the model's input area-averaged to {INPUT_GRID}×{INPUT_GRID} (video: the mean "
             "frame; audio: the fbank). Made on: "
             f"{machine['cpu']}, torch {machine['torch']}, fp32.", "",
             "| target | features | input (no encoder) | pretrained | random init "
             "| pretrained − random |",
             "|---|---|---|---|---|---|"]
    for name, by_modality in results.items():
        for modality, cell in by_modality.items():
            pre, rnd = cell["pretrained"], cell["random"]
            gain = "–" if pre is None else f"{np.mean(pre) - np.mean(rnd):+.3f}"
            lines.append(f"| {name} | {modality} | {_cell(cell['input'])} | {_cell(pre)} "
                         f"| {_cell(rnd)} | {gain} |")
    lines += _depth_table(by_depth)
    report, metrics = Path(PROBE_OUTPUTS["report"]), Path(PROBE_OUTPUTS["metrics"])
    atomic_write_text(metrics, json.dumps({"dataset": dataset, "encoder": str(encoder),
                                           "folds": folds, "penalty": PENALTY,
                                           "input_grid": INPUT_GRID,
                                           "machine": machine, "uar": results,
                                           "uar_by_depth": by_depth}, indent=2) + "\n")
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def _depth_table(by_depth: DepthUARs) -> list[str]:
    """Markdown lines: each target and modality probed at every depth of the encoder."""
    lines = ["", "## By depth", "",
             "The same probe on each stage of the encoder: depth 0 is the mean patch embedding "
             "(a linear map of the mean patch, before any block), depth d the region tokens "
             "after block d averaged over regions; the table above reads the head's input, "
             "a mix of all blocks.", "",
             "| target | features | depth | pretrained | random init | pretrained − random |",
             "|---|---|---|---|---|---|"]
    for name, by_modality in by_depth.items():
        for modality, cell in by_modality.items():
            pre = cell["pretrained"]
            for d, rnd in enumerate(cell["random"]):
                gain = "–" if pre is None else f"{np.mean(pre[d]) - np.mean(rnd):+.3f}"
                lines.append(f"| {name} | {modality} | {d} | "
                             f"{_cell(None if pre is None else pre[d])} | {_cell(rnd)} | {gain} |")
    return lines
