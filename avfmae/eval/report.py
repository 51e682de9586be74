"""The report stage: per-dataset fold tables (mean ± std), for micro-expression datasets the
figures pooled over the leave-one-subject-out folds, for dimensional regression a table per
dimension and predicted-vs-true scatter plots, for levelled dimensional datasets a weighted-F1 /
UAR table per dimension and a confusion matrix per dimension, a cross-dataset summary, the
s1 → s2 → s3 comparison on validation and on test, confusion matrices (classification only) and
training curves.

Reads only what the evaluate and fine-tune stages wrote (``metrics/<ds>/fold<k>/test.json``,
``metrics/<ds>/fold<k>/<stage>.json``, ``plots/evaluate/<ds>/fold<k>.csv``, the curves under
``live/finetune/<ds>/fold<k>/<stage>/``); writes ``reports/report.md``,
``metrics/summary.json`` and PNG figures under ``plots/report/``. The summary also holds each
dataset's per-fold test score of its selection metric (``test_by_fold``, what ``avfmae claims``
pairs across DVC experiments) and the ``machine`` the report ran on: under ``dvc repro`` and
``dvc exp run`` every stage runs there, under SLURM only the report does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from avfmae import pipeline
from avfmae.config import Params
from avfmae.curves import read_curves
from avfmae.data import registry
from avfmae.errors import UserError
from avfmae.eval.metrics import pooled_loso_metrics
from avfmae.io import atomic_write_text, pyplot, save_figure
from avfmae.machine import cpu_label, describe_machine

log = logging.getLogger(__name__)

_REPORT_STAGE = pipeline.stage("report")
REPORT = Path(_REPORT_STAGE.outs["report"])
SUMMARY = Path(_REPORT_STAGE.metrics["summary"])
FIGURES = Path(_REPORT_STAGE.plots["figures"])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path} is missing: run the evaluate/finetune stages first")
    return json.loads(path.read_text())


def fold_table(params: Params, dataset: str, key: str = "test") -> pd.DataFrame:
    """One row per fold, one column per metric (scalars only) of ``test.json[key]``."""
    rows = {}
    for fold in params.data.folds:
        result = _read_json(pipeline.path("evaluate", "test", params, ds=dataset, fold=fold))
        rows[fold] = {m: v for m, v in result[key].items() if np.isscalar(v)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "fold"
    return table


def mean_std(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Mean and (sample) standard deviation of each column across folds."""
    std = table.std(ddof=1) if len(table) > 1 else table.iloc[0] * 0.0
    return {c: {"mean": float(table[c].mean()), "std": float(std[c])} for c in table.columns}


def stage_comparison(params: Params, dataset: str, split: str = "validation") -> pd.DataFrame:
    """The selection metric of each fine-tuning stage's selected model per fold, on
    ``validation`` (what its epoch was selected on) or on ``test`` (reported, never selected
    on)."""
    scores_of = _test_by_stage if split == "test" else _validation_by_stage
    rows = {fold: scores_of(params, dataset, fold) for fold in params.data.folds}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "fold"
    return table


def _validation_by_stage(params: Params, dataset: str, fold: int) -> dict[str, float]:
    scores = {}
    for st in params.finetune.stages:
        sel = _read_json(pipeline.path(f"finetune_{st}", "selection", params, ds=dataset,
                                         fold=fold))
        scores[st] = sel["val_best"][sel["selection_metric"]]
    return scores


def _test_by_stage(params: Params, dataset: str, fold: int) -> dict[str, float]:
    result = _read_json(pipeline.path("evaluate", "test", params, ds=dataset, fold=fold))
    metric = result["selected"]["metric"]
    return {st: result["test_by_stage"][st][metric] for st in params.finetune.stages}


def _markdown_table(table: pd.DataFrame, stats: dict[str, dict[str, float]] | None) -> str:
    cols = list(table.columns)
    lines = ["| fold | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for fold, row in table.iterrows():
        lines.append(f"| {fold} | " + " | ".join(f"{row[c]:.4f}" for c in cols) + " |")
    if stats:
        lines.append("| **mean ± std** | " + " | ".join(
            f"**{stats[c]['mean']:.4f} ± {stats[c]['std']:.4f}**" for c in cols) + " |")
    return "\n".join(lines)


def fold_predictions(params: Params, dataset: str,
                     regression: bool = False) -> list[pd.DataFrame]:
    """The per-clip ``actual``/``predicted`` label names (values per ``dimension`` for
    regression) that evaluate wrote, one frame a fold."""
    # label names stay text even when they look like numbers (levels "1".."5")
    dtype = {"clip_id": str, "dimension": str} if regression else str
    return [pd.read_csv(p, dtype=dtype) for fold in params.data.folds
            if (p := pipeline.path("evaluate", "confusion", params, ds=dataset,
                                   fold=fold)).is_file()]


def pooled_table(frames: list[pd.DataFrame], labels: list[str]) -> pd.DataFrame:
    """MER protocol: UF1 / UAR / WAR over the test predictions of every fold run
    (:func:`fold_predictions`), pooled (one row, ``fold`` = "pooled")."""
    index = {name: i for i, name in enumerate(labels)}
    folds = [(f["actual"].map(index).to_numpy(), f["predicted"].map(index).to_numpy())
             for f in frames]
    pooled = pooled_loso_metrics(folds, num_classes=len(labels))
    table = pd.DataFrame([{k: pooled[k] for k in ("uf1", "uar", "war")}], index=["pooled"])
    table.index.name = "fold"
    return table


REGRESSION_METRICS = ("ccc", "pcc", "mse", "mae")


LEVEL_METRICS = ("weighted_f1", "uar")


def dimension_table(params: Params, dataset: str, dims: list[str],
                    metrics: tuple[str, ...] = REGRESSION_METRICS) -> pd.DataFrame:
    """DEA: one row per dimension, mean ± std over folds of each of ``metrics`` (regression:
    :data:`REGRESSION_METRICS`; levelled: :data:`LEVEL_METRICS`)."""
    test = fold_table(params, dataset, "test")
    rows = {}
    for dim in dims:
        stats = mean_std(test[[f"{m}_{dim}" for m in metrics]])
        rows[dim] = {m: f"{stats[f'{m}_{dim}']['mean']:.4f} ± {stats[f'{m}_{dim}']['std']:.4f}"
                     for m in metrics}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "dimension"
    return table


def _dimension_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| dimension | " + " | ".join(f"{c} (mean ± std)" for c in cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {dim} | " + " | ".join(row[c] for c in cols) + " |"
              for dim, row in table.iterrows()]
    return "\n".join(lines)


def _scatter_figure(dataset: str, frames: list[pd.DataFrame]) -> Path | None:
    """Predicted against true value of every test clip (all folds), one panel a dimension."""
    if not frames:
        return None
    plt = pyplot()
    preds = pd.concat(frames)
    dims = list(dict.fromkeys(preds["dimension"]))
    fig, axes = plt.subplots(1, len(dims), figsize=(3.6 * len(dims), 3.6), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        sub = preds[preds["dimension"] == dim]
        ax.scatter(sub["actual"], sub["predicted"], s=10, alpha=0.6)
        lo = float(min(sub["actual"].min(), sub["predicted"].min()))
        hi = float(max(sub["actual"].max(), sub["predicted"].max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
        ax.set_xlabel(f"true {dim}")
        ax.set_ylabel(f"predicted {dim}")
    fig.suptitle(f"{dataset}: test predictions, all folds", fontsize=10)
    return save_figure(fig, FIGURES / f"{dataset}_scatter.png")


def _confusion_figure(dataset: str, frames: list[pd.DataFrame], labels: list[str],
                      dimension: str | None = None) -> Path | None:
    """Test confusion of all folds; of one ``dimension``'s levels for a levelled dataset."""
    if not frames or not labels:
        return None
    plt = pyplot()

    preds = pd.concat(frames)
    if dimension is not None:
        preds = preds[preds["dimension"] == dimension]
    index = {name: i for i, name in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=int)
    for actual, predicted in zip(preds["actual"], preds["predicted"], strict=True):
        counts[index[actual], index[predicted]] += 1
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center",
                color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    name = dataset if dimension is None else f"{dataset} {dimension}"
    ax.set_title(f"{name}: test confusion, all folds\n(counts; colour = share of the row)",
                 fontsize=10)
    suffix = "" if dimension is None else f"_{dimension}"
    return save_figure(fig, FIGURES / f"{dataset}_confusion{suffix}.png")


def _curves_figure(params: Params, dataset: str) -> Path | None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    drawn = False
    for fold in params.data.folds:
        offset = 0
        for st in params.finetune.stages:
            where = {"params": params, "ds": dataset, "fold": fold}
            curve = read_curves(pipeline.path(f"finetune_{st}", "curves_summary", **where).parent)
            if curve.empty:
                continue
            metric = "val_" + _read_json(pipeline.path(f"finetune_{st}", "selection", **where))[
                "selection_metric"]
            x = curve["step"] + offset  # one step per epoch
            axes[0].plot(x, curve["loss"], label=f"fold {fold} {st}")
            axes[1].plot(x, curve[metric], label=f"fold {fold} {st}")
            axes[1].set_ylabel(metric)
            offset = int(x.max()) + 1
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    axes[0].set_ylabel("train loss")
    for ax in axes:
        ax.set_xlabel("epoch (stages concatenated)")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{dataset}: fine-tuning curves")
    return save_figure(fig, FIGURES / f"{dataset}_curves.png")


def fold_scores(test: pd.DataFrame, first: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{metric: {fold: score}}`` for the selection metric alone: the one figure per fold
    that runs are compared by, kept small because ``dvc exp show`` shows every key."""
    metric = first.get("selected", {}).get("metric", "")
    if metric not in test.columns:
        return {}
    return _by_fold(test[[metric]])


def _by_fold(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{column: {fold: score}}`` of a per-fold table (a stage comparison): the runs of an
    ablation set pair stages per fold, not only per seed."""
    return {c: {str(fold): float(v) for fold, v in table[c].items()} for c in table.columns}


def _only(stats: dict[str, Any], metric: str) -> dict[str, Any]:
    """``stats`` of ``metric`` alone (all of them when it is not among them)."""
    return {metric: stats[metric]} if metric in stats else stats


def _machine_line(machine: dict[str, Any]) -> str:
    device = machine.get("gpu") or machine["device"]
    return (f"Made on {cpu_label(machine)}, {machine['threads']} threads, torch "
            f"{machine['torch']}, {device}, fine-tuning "
            f"precision {machine['precision']}; figures differ across CPUs, precisions and seeds.")


def _dataset_section(params: Params, ds: str, summary: dict[str, Any]) -> list[str]:
    """The report lines of one dataset; fills ``summary[ds]``."""
    test = fold_table(params, ds, "test")
    last = fold_table(params, ds, "test_last_epoch")
    stages, test_stages = stage_comparison(params, ds), stage_comparison(params, ds, "test")
    first = _read_json(pipeline.path("evaluate", "test", params, ds=ds,
                                     fold=params.data.folds[0]))
    labels = first.get("labels", [])
    levels_of = first.get("dimensions", [])  # a levelled DEA dataset's dimensions
    regression = "confusion_matrix" not in first and first.get("task") == "DEA"
    dims = labels if regression else levels_of
    if dims:  # the per-dimension figures get a table of their own below
        per_dim = [f"{m}_{d}" for d in dims for m in test.columns if f"{m}_{d}" in test.columns]
        test, last = test.drop(columns=per_dim), last.drop(columns=per_dim)
    stats, last_stats, stage_stats = mean_std(test), mean_std(last), mean_std(stages)
    test_stage_stats = mean_std(test_stages)
    selected = first.get("selected", {}).get("metric", "")
    # dvc metrics/exp show list every key: the headline figures only, details stay in files
    summary[ds] = {"test": stats, "test_last_epoch": _only(last_stats, selected),
                   "val_by_stage": _by_fold(stages), "test_by_stage": _by_fold(test_stages),
                   "test_by_fold": fold_scores(test, first)}
    sections = [f"## {ds}", "", "### Test (selected on validation)", "",
                _markdown_table(test, stats), "",
                "### Test at the last epoch", "", _markdown_table(last, last_stats), "",
                "### Validation score by fine-tuning stage", "",
                _markdown_table(stages, stage_stats), "",
                "### Test score by fine-tuning stage", "",
                "Each stage's selected model on the test split: what every stage adds, "
                "measured; reported only, no choice is made on it.", "",
                _markdown_table(test_stages, test_stage_stats), ""]
    predictions = fold_predictions(params, ds, regression)
    figures = [_curves_figure(params, ds)]
    if dims:
        table = dimension_table(params, ds, dims,
                                REGRESSION_METRICS if regression else LEVEL_METRICS)
        summary[ds]["test_by_dimension"] = table.to_dict(orient="index")
        sections += [f"### Test per dimension, folds {params.data.folds}", "",
                     _dimension_markdown(table), ""]
        if levels_of:
            sections += [f"Each dimension is classified into the levels {', '.join(labels)}; "
                         "the table metrics above are the means over dimensions.", ""]
    if regression:
        figures.insert(0, _scatter_figure(ds, predictions))
    elif levels_of:
        figures[:0] = [_confusion_figure(ds, predictions, labels, d) for d in levels_of]
    else:
        figures.insert(0, _confusion_figure(ds, predictions, labels))
    if registry.get(ds).family == "MER":
        pooled = pooled_table(predictions, labels)
        summary[ds]["test_pooled"] = {c: float(pooled[c].iloc[0]) for c in pooled.columns}
        sections += [f"### Test pooled over folds {params.data.folds} (MER protocol)", "",
                     _markdown_table(pooled, None), ""]
    for fig in figures:
        if fig is not None:
            sections += [f"![{fig.stem}](../{fig.as_posix()})", ""]
    return sections


def report(params: Params) -> Path:
    """Write the report, the summary metrics and the figures; returns the report path."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    sections = ["# avfmae results", "",
                f"Folds {params.data.folds}; fine-tuning stages {params.finetune.stages}; "
                f"scale `{params.model.scale}`; init `{params.finetune.init}`; "
                f"modality `{params.finetune.modality}`; s1 pools each target with the other "
                f"enabled datasets of its family and {params.data.s1_pool or 'no other'} "
                "(one head per dataset).",
                "Test figures come from the model selected on the validation split carved from "
                "each training fold; the test split is evaluated once. Last-epoch test figures "
                "are listed separately.", ""]
    for ds in params.data.datasets:
        try:
            sections += _dataset_section(params, ds, summary)
        except UserError:
            raise
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise UserError(f"report: the results of {ds} do not have the expected shape "
                            f"({type(err).__name__}: {err}); rerun `avfmae evaluate` for its "
                            "folds with this version") from None
    if len(params.data.datasets) > 1:
        sections += ["## Summary across datasets", "", "| dataset | metric | mean ± std |",
                     "|---|---|---|"]
        for ds, res in summary.items():
            for metric, ms in res["test"].items():
                sections.append(f"| {ds} | {metric} | {ms['mean']:.4f} ± {ms['std']:.4f} |")
    summary["machine"] = describe_machine(params.finetune.amp)
    sections[5:5] = [_machine_line(summary["machine"]), ""]  # after the header paragraph
    atomic_write_text(SUMMARY, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(REPORT, "\n".join(sections) + "\n")
    log.info("report written to %s", REPORT)
    return REPORT
