"""The evaluate stage: each fold's test split, predicted once.

Evaluation never selects anything: the fine-tuning stage picked its epoch on validation; here
the test split of a fold is predicted once with the selected (best-on-validation) weights of the
last enabled stage, and once with its last-epoch weights (reported separately, labelled as such).
The selected weights of every earlier enabled stage are scored on the same split too, so what each
stage adds is measured on test; those figures are reported and never used to choose anything.
Every clip is seen as ``eval.num_windows`` fixed temporal windows whose softmax probabilities
(CEA, MER; per dimension for levelled DEA) or outputs (DEA regression) are averaged.
Predictions are gathered from all ranks before any metric is computed.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfmae import pipeline
from avfmae.config import Params
from avfmae.errors import UserError
from avfmae.eval.inference import eval_dataset, predict, scalars, task_metrics
from avfmae.io import atomic_write_bytes, atomic_write_text
from avfmae.models.build import build_classifier
from avfmae.models.loading import load_weights_into
from avfmae.tasks import Task, split_rows, task_of
from avfmae.train.distributed import cleanup_distributed, init_distributed, is_main_process

log = logging.getLogger(__name__)


def evaluate(params: Params, dataset: str, fold: int) -> Path:
    """The evaluate stage: test metrics of the selected and the last-epoch model of a fold's
    last stage, and of the selected model of each earlier stage."""
    info = init_distributed()
    task = task_of(params, dataset)
    stages = params.finetune.stages
    selections = {st: _selection(params, st, dataset, fold) for st in stages}
    rows = split_rows(params, dataset, fold, "test")
    data = eval_dataset(params, rows, task)

    def scored(stage: str, which: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        model = build_classifier(params, {dataset: task.outputs}).to(info.device)
        load_weights_into(model, _model_dir(params, stage, dataset, fold)
                          / f"{which}.safetensors", heads=True, complete=True)
        pred = predict(model, data, task, batch_size=params.eval.batch_size,
                       device=info.device)
        return task_metrics(task, pred), pred

    results, preds = {}, {}
    for which in ("best", "last"):
        results[which], preds[which] = scored(stages[-1], which)
    by_stage = {st: scored(st, "best")[0] for st in stages[:-1]}
    by_stage[stages[-1]] = results["best"]
    if is_main_process():
        _write_results(params, dataset, fold, task, selections, rows, results, preds,
                       by_stage)
    cleanup_distributed()
    return pipeline.path("evaluate", "test", params, ds=dataset, fold=fold)


def _model_dir(params: Params, stage: str, dataset: str, fold: int) -> Path:
    return pipeline.path(f"finetune_{stage}", "model", params, ds=dataset, fold=fold)


def _selection(params: Params, stage: str, dataset: str, fold: int) -> dict[str, Any]:
    """The selection record of a fine-tuned stage; a user error when the stage has not run."""
    model_dir = _model_dir(params, stage, dataset, fold)
    path = pipeline.path(f"finetune_{stage}", "selection", params, ds=dataset, fold=fold)
    if not (model_dir / "best.safetensors").is_file() or not path.is_file():
        raise UserError(f"{model_dir}: no fine-tuned model; run `avfmae finetune --stage {stage} "
                        f"--dataset {dataset} --fold {fold}` first")
    return json.loads(path.read_text())


def _write_results(params: Params, dataset: str, fold: int, task: Task,
                   selections: dict[str, dict[str, Any]], rows: pd.DataFrame,
                   results: dict[str, dict[str, Any]], preds: dict[str, dict],
                   by_stage: dict[str, dict[str, Any]]) -> None:
    stage = params.finetune.stages[-1]
    selection = selections[stage]
    best = preds["best"]
    clip_ids = rows["clip_id"].to_numpy()[best["index"]]
    summary = {
        "dataset": dataset, "fold": fold, "task": task.family, "labels": list(task.names),
        "n_test": int(len(best["index"])), "num_windows": params.eval.num_windows,
        "selected": {"stage": stage, "epoch": selection["best_epoch"],
                     "metric": selection["selection_metric"], "val": selection["val_best"]},
        "test": scalars(results["best"]),
        "test_last_epoch": scalars(results["last"]),
        "test_by_stage": {st: {"epoch": selections[st]["best_epoch"], **scalars(r)}
                          for st, r in by_stage.items()},
    }
    if task.levelled:
        summary["dimensions"] = list(task.dimensions)
    if not task.regression:
        summary["confusion_matrix"] = results["best"]["confusion_matrix"]
    where = {"ds": dataset, "fold": fold}
    atomic_write_text(pipeline.path("evaluate", "test", params, **where),
                      json.dumps(summary, indent=2) + "\n")
    atomic_write_text(pipeline.path("evaluate", "confusion", params, **where),
                      clip_table(task, clip_ids, best).to_csv(index=False))
    buf = io.BytesIO()
    np.savez(buf, clip_id=clip_ids.astype(str), **{f"{w}_{k}": v for w, p in preds.items()
                                       for k, v in p.items()})
    atomic_write_bytes(pipeline.path("evaluate", "predictions", params, **where),
                       buf.getvalue())
    log.info("%s fold %d test (selected epoch %s of %s): %s", dataset, fold,
             selection["best_epoch"], stage,
             ", ".join(f"{k}={v:.4f}" for k, v in summary["test"].items()))


def clip_table(task: Task, clip_ids: np.ndarray, pred: dict[str, np.ndarray]) -> pd.DataFrame:
    """``actual``/``predicted`` of every test clip: label names (classification), values per
    ``dimension`` (regression), or level names per ``dimension`` (levelled)."""
    if task.regression:
        return pd.DataFrame({"clip_id": np.repeat(clip_ids, task.outputs),
                             "dimension": np.tile(task.names, len(clip_ids)),
                             "actual": pred["target"].reshape(-1),
                             "predicted": pred["output"].reshape(-1)})
    names = np.array(task.names)
    if task.levelled:
        dims = len(task.dimensions)
        return pd.DataFrame({"clip_id": np.repeat(clip_ids, dims),
                             "dimension": np.tile(task.dimensions, len(clip_ids)),
                             "actual": names[pred["target"].astype(int).reshape(-1)],
                             "predicted": names[pred["output"].argmax(-1).reshape(-1)]})
    return pd.DataFrame({"clip_id": clip_ids, "actual": names[pred["label"]],
                         "predicted": names[pred["output"].argmax(-1)]})
