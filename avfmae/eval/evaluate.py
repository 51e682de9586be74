"""Deterministic multi-view prediction, task metrics, and the evaluate stage.

Evaluation never selects anything: the fine-tuning stage picked its epoch on validation; here
the test split of a fold is predicted once with the selected (best-on-validation) weights of the
last enabled stage, and once with its last-epoch weights (reported separately, labelled as such).
Every clip is seen as ``eval.num_windows`` fixed temporal windows whose softmax probabilities
(CEA, MER) or outputs (DEA) are averaged. Predictions are gathered from all ranks before any
metric is computed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from avfmae.config import Params
from avfmae.data import registry
from avfmae.data.clips import ClipDataset, load_split
from avfmae.errors import UserError
from avfmae.eval.metrics import classification_metrics, regression_metrics
from avfmae.io import atomic_write_bytes, atomic_write_text
from avfmae.train.distributed import (
    ShardSampler,
    cleanup_distributed,
    gather_predictions,
    init_distributed,
    is_main_process,
)

log = logging.getLogger(__name__)

# the validation metric each kind of task selects its epoch on: the protocols' table metric
# (weighted F1 for levelled dimensions, UF1 for micro-expressions)
SELECTION_METRIC = {"CEA": "uar", "MER": "macro_f1", "DEA": "ccc", "DEA-levels": "weighted_f1"}


@dataclass(frozen=True)
class Task:
    """What a dataset asks of the model: family, output size, label or target names.

    ``regression``: continuous targets (``names`` = target dimensions); otherwise classes
    (``names`` = label names; for a levelled dimensional dataset the level names).
    """

    dataset: str
    family: str
    names: tuple[str, ...]
    regression: bool = False

    @property
    def outputs(self) -> int:
        return len(self.names)

    @property
    def target_columns(self) -> tuple[str, ...]:
        return tuple(f"t_{n}" for n in self.names) if self.regression else ()

    @property
    def selection_metric(self) -> str:
        if self.family == "DEA" and not self.regression:
            return SELECTION_METRIC["DEA-levels"]
        return SELECTION_METRIC[self.family]


def task_of(params: Params, dataset: str) -> Task:
    """The task of a registered labeled dataset. Label names come from the registry, or for
    datasets whose names are read from the data (``mafw43``) from the index stage's
    ``index.json``."""
    spec = registry.get(dataset)
    if spec.is_pool:
        raise UserError(f"{dataset} is an unlabeled pretraining pool: nothing to evaluate")
    regression = spec.is_dimensional and not spec.levelled
    names = spec.targets if regression else spec.labels
    if not names:
        index_json = Path(params.data.root) / "interim" / dataset / "index.json"
        if not index_json.is_file():
            raise UserError(f"{index_json} is missing: run `avfmae index {dataset}` first")
        names = json.loads(index_json.read_text())["labels"]
    if not names:
        raise UserError(f"{dataset}: neither the registry nor {dataset}'s index lists label names")
    return Task(dataset, spec.family, tuple(names), regression)


def split_rows(params: Params, dataset: str, fold: int, part: str) -> pd.DataFrame:
    """Rows of the clip store of ``dataset`` in ``part`` of ``fold``; an empty part is an error."""
    root = Path(params.data.root)
    try:
        rows = load_split(root / "processed" / dataset, root / "interim" / dataset / "splits.csv",
                          fold, part)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"{dataset} fold {fold} {part}: {err}") from None
    if rows.empty:
        raise UserError(f"{dataset} fold {fold}: the {part} split has no usable clip")
    return rows


def eval_dataset(params: Params, rows: pd.DataFrame, task: Task) -> ClipDataset:
    """Deterministic views of ``rows`` (no augmentation, fixed windows)."""
    return ClipDataset(rows, "eval", num_windows=params.eval.num_windows,
                       targets=task.target_columns)


@torch.no_grad()
def predict(model: nn.Module, dataset: ClipDataset, task: Task, *, batch_size: int,
            device: torch.device, num_workers: int = 0) -> dict[str, np.ndarray]:
    """Window-averaged predictions for every clip of ``dataset``, gathered from all ranks.

    Returns ``index`` (N,), ``output`` (N, K) — class probabilities or regression outputs —,
    ``label`` (N,) and ``target`` (N, K_targets), sorted by dataset index.
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size,
                                         sampler=ShardSampler(dataset), num_workers=num_workers)
    head = task.dataset if hasattr(model, "heads") else None
    was_training = model.training
    model.eval()
    idx, outs, labels, targets = [], [], [], []
    for batch in loader:
        video, audio = batch["video"].to(device), batch["audio"].to(device)
        b, w = video.shape[:2]
        out = model(video.flatten(0, 1), audio.flatten(0, 1), head=head).float()
        out = out.view(b, w, -1)
        out = out.mean(1) if task.regression else out.softmax(-1).mean(1)
        idx.append(batch["index"]), outs.append(out.cpu())
        labels.append(batch["label"]), targets.append(batch["target"])
    model.train(was_training)
    if not idx:
        empty = torch.zeros(0, dtype=torch.long)
        idx, outs = [empty], [torch.zeros(0, task.outputs)]
        labels, targets = [empty], [torch.zeros(0, len(dataset.targets))]
    index, output, label, target = gather_predictions(
        torch.cat(outs), torch.cat(labels), torch.cat(targets), index=torch.cat(idx))
    return {"index": index, "output": output, "label": label, "target": target}


def task_metrics(task: Task, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """Scalar metrics (and the confusion matrix for classification) of gathered predictions."""
    if task.regression:
        per_dim = regression_metrics(pred["output"], pred["target"], names=list(task.names))
        flat = {f"{m}_{dim}": v for dim, ms in per_dim.items() if dim != "mean"
                for m, v in ms.items()}
        return {**per_dim["mean"], **flat}
    metrics = classification_metrics(pred["label"], pred["output"].argmax(-1), task.outputs)
    return {k: v for k, v in metrics.items() if k not in ("per_class_recall", "per_class_f1")}


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isscalar(v)}


def stage_model_dir(params: Params, dataset: str, fold: int, stage: str) -> Path:
    return Path(f"models/finetune/{dataset}/fold{fold}/{stage}")


def evaluate(params: Params, dataset: str, fold: int) -> Path:
    """The evaluate stage: test metrics of the selected and the last-epoch model of a fold."""
    from avfmae.train.finetune import build_classifier, load_weights_into

    info = init_distributed()
    task = task_of(params, dataset)
    stage = params.finetune.stages[-1]
    model_dir = stage_model_dir(params, dataset, fold, stage)
    selection_path = Path(f"metrics/{dataset}/fold{fold}/{stage}.json")
    if not (model_dir / "best.safetensors").is_file() or not selection_path.is_file():
        raise UserError(f"{model_dir}: no fine-tuned model; run `avfmae finetune --stage {stage} "
                        f"--dataset {dataset} --fold {fold}` first")
    selection = json.loads(selection_path.read_text())
    rows = split_rows(params, dataset, fold, "test")
    data = eval_dataset(params, rows, task)
    results, preds = {}, {}
    for which in ("best", "last"):
        model = build_classifier(params, {dataset: task.outputs}).to(info.device)
        load_weights_into(model, model_dir / f"{which}.safetensors", heads=True)
        preds[which] = predict(model, data, task, batch_size=params.eval.batch_size,
                               device=info.device)
        results[which] = task_metrics(task, preds[which])
    if is_main_process():
        _write_results(params, dataset, fold, task, stage, selection, rows, results, preds)
    cleanup_distributed()
    return Path(f"metrics/{dataset}/fold{fold}/test.json")


def _write_results(params: Params, dataset: str, fold: int, task: Task, stage: str,
                   selection: dict[str, Any], rows: pd.DataFrame,
                   results: dict[str, dict[str, Any]], preds: dict[str, dict]) -> None:
    best = preds["best"]
    clip_ids = rows["clip_id"].to_numpy()[best["index"]]
    summary = {
        "dataset": dataset, "fold": fold, "task": task.family, "labels": list(task.names),
        "n_test": int(len(best["index"])), "num_windows": params.eval.num_windows,
        "selected": {"stage": stage, "epoch": selection["best_epoch"],
                     "metric": selection["selection_metric"], "val": selection["val_best"]},
        "test": scalars(results["best"]),
        "test_last_epoch": scalars(results["last"]),
    }
    if not task.regression:
        summary["confusion_matrix"] = results["best"]["confusion_matrix"]
    atomic_write_text(Path(f"metrics/{dataset}/fold{fold}/test.json"),
                      json.dumps(summary, indent=2) + "\n")
    if task.regression:
        table = pd.DataFrame({"clip_id": np.repeat(clip_ids, task.outputs),
                              "dimension": np.tile(task.names, len(clip_ids)),
                              "actual": best["target"].reshape(-1),
                              "predicted": best["output"].reshape(-1)})
    else:
        names = np.array(task.names)
        table = pd.DataFrame({"clip_id": clip_ids, "actual": names[best["label"]],
                              "predicted": names[best["output"].argmax(-1)]})
    atomic_write_text(Path(f"plots/evaluate/{dataset}/fold{fold}.csv"),
                      table.to_csv(index=False))
    import io

    buf = io.BytesIO()
    np.savez(buf, clip_id=clip_ids.astype(str), **{f"{w}_{k}": v for w, p in preds.items()
                                       for k, v in p.items()})
    atomic_write_bytes(Path(f"predictions/{dataset}/fold{fold}.npz"), buf.getvalue())
    log.info("%s fold %d test (selected epoch %s of %s): %s", dataset, fold,
             selection["best_epoch"], stage,
             ", ".join(f"{k}={v:.4f}" for k, v in summary["test"].items()))
