"""The test-time view of a model: deterministic windows, window-averaged predictions gathered
from every rank, and the metrics of a task. Model selection (fine-tuning) and the evaluate
stage both predict through here, so validation and test use one protocol.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from avfmae.config import Params
from avfmae.data.clips import ClipDataset
from avfmae.eval.metrics import classification_metrics, regression_metrics
from avfmae.tasks import Task
from avfmae.train.distributed import ShardSampler, gather_predictions


def eval_dataset(params: Params, rows: pd.DataFrame, task: Task) -> ClipDataset:
    """Deterministic views of ``rows`` (no augmentation, fixed windows)."""
    return ClipDataset(rows, "eval", num_windows=params.eval.num_windows,
                       targets=task.target_columns)


@torch.no_grad()
def predict(model: nn.Module, dataset: ClipDataset, task: Task, *, batch_size: int,
            device: torch.device, num_workers: int = 0) -> dict[str, np.ndarray]:
    """Window-averaged predictions for every clip of ``dataset``, gathered from all ranks.

    Returns ``index`` (N,), ``output`` (N, K) — class probabilities or regression outputs;
    (N, D, L) level probabilities per dimension for a levelled task —, ``label`` (N,) and
    ``target`` (N, K_targets) (a levelled task's level indices, (N, D)), sorted by dataset index.
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
        out = window_average(out.view(b, w, -1), task)
        idx.append(batch["index"]), outs.append(out.cpu())
        labels.append(batch["label"]), targets.append(batch["target"])
    model.train(was_training)
    if not idx:
        empty = torch.zeros(0, dtype=torch.long)
        idx, outs = [empty], [torch.zeros(0, *task.output_shape)]
        labels, targets = [empty], [torch.zeros(0, len(dataset.targets))]
    index, output, label, target = gather_predictions(
        torch.cat(outs), torch.cat(labels), torch.cat(targets), index=torch.cat(idx))
    return {"index": index, "output": output, "label": label, "target": target}


def window_average(logits: torch.Tensor, task: Task) -> torch.Tensor:
    """A clip's outputs from its windows' ``logits (B, W, K)``: mean regression values (B, K),
    mean class probabilities (B, K), or a levelled task's mean level probabilities of each
    dimension (B, D, L), one softmax per dimension."""
    if task.regression:
        return logits.mean(1)
    b, w = logits.shape[:2]
    probs = logits.view(b, w, -1, len(task.names)).softmax(-1).mean(1)
    return probs.view(b, *task.output_shape)


def task_metrics(task: Task, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """Scalar metrics (and the confusion matrix for classification) of gathered predictions."""
    if task.levelled:
        return levelled_metrics(task, pred)
    if task.regression:
        per_dim = regression_metrics(pred["output"], pred["target"], names=list(task.names))
        flat = {f"{m}_{dim}": v for dim, ms in per_dim.items() if dim != "mean"
                for m, v in ms.items()}
        return {**per_dim["mean"], **flat}
    metrics = classification_metrics(pred["label"], pred["output"].argmax(-1), task.outputs)
    return {k: v for k, v in metrics.items() if k not in ("per_class_recall", "per_class_f1")}


def levelled_metrics(task: Task, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    """Classification metrics of each dimension (``weighted_f1_arousal``, …), their mean over
    dimensions under the plain name (``weighted_f1``: the headline and selection metric), and
    ``confusion_matrix`` as dimension → (L, L) list."""
    per_dim = {dim: classification_metrics(pred["target"][:, d].astype(int),
                                           pred["output"][:, d].argmax(-1), len(task.names))
               for d, dim in enumerate(task.dimensions)}
    keys = [k for k, v in next(iter(per_dim.values())).items() if np.isscalar(v)]
    mean = {k: float(np.mean([m[k] for m in per_dim.values()])) for k in keys}
    flat = {f"{k}_{dim}": m[k] for dim, m in per_dim.items() for k in keys}
    return {**mean, **flat,
            "confusion_matrix": {dim: m["confusion_matrix"] for dim, m in per_dim.items()}}


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isscalar(v)}
