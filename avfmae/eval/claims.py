"""The paper's claims, tabled from the ablation experiments' runs (:mod:`avfmae.eval.ablations`).

For each claim and dataset: each side's mean ± std over every finished run (seeds × folds), the
runs paired by seed and fold with the wins, ties and losses of the claimed better side, and a
one-sided Wilcoxon signed-rank test of the paired differences. Below :data:`MIN_PAIRS` pairs
no test is reported: with n pairs the smallest one-sided p it can give is 2⁻ⁿ, so with fewer
than five even a win in every pair could not reach 0.05. Runs that failed, are still queued or
never ran are listed, never silently dropped. The configurations that differ from the main job
only in what is pretrained and fine-tuned also fill a pretraining × fine-tuning modality table,
and every configuration's runs give the validation and test score of each fine-tuning stage's
selected model, the last stage paired with the first by seed and by fold.

Writes ``reports/claims.md``, ``metrics/claims.json`` and ``plots/claims/<dataset>.png``
(paths in :data:`avfmae.pipeline.CLAIMS_OUTPUTS`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avfmae.eval.ablations import ABLATIONS, CLAIMS, Claim, experiment_name, in_modality_table
from avfmae.eval.experiments import Run
from avfmae.io import atomic_write_text, pyplot, save_figure
from avfmae.machine import cpu_label
from avfmae.pipeline import CLAIMS_OUTPUTS

__all__ = ["MIN_PAIRS", "SIGNIFICANCE", "ClaimResult", "Side", "evaluate_claim",
           "not_used", "write_claims"]

MIN_PAIRS = 5
SIGNIFICANCE = 0.05
TEST_NAME = "one-sided Wilcoxon signed-rank (scipy, zero differences dropped)"


@dataclass(frozen=True)
class Side:
    config: str
    mean: float | None
    std: float | None
    runs: int


@dataclass(frozen=True)
class ClaimResult:
    claim: str
    statement: str
    dataset: str
    metric: str
    better: Side
    worse: Side
    pairs: int
    wins: int
    ties: int
    losses: int
    p_value: float | None
    verdict: str


def _scores(runs: Iterable[Run], config: str, dataset: str) -> dict[tuple[int, int], float]:
    """``(seed, fold) → score`` of a configuration's usable runs on one dataset."""
    return {(r.seed, fold): score for r in runs if r.usable and r.config == config
            for (ds, fold), score in r.scores.items() if ds == dataset}


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    v = np.array(list(values), dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _cell(values: Iterable[float]) -> str:
    return "{:.3f} ± {:.3f}".format(*_mean_std(values))


def _side(config: str, scores: dict[tuple[int, int], float]) -> Side:
    if not scores:
        return Side(config, None, None, 0)
    return Side(config, *_mean_std(scores.values()), len(scores))


def paired_p_value(differences: list[float]) -> float:
    """One-sided p of a Wilcoxon signed-rank test that the differences are positive."""
    from scipy.stats import wilcoxon

    if not any(differences):  # every pair tied: no evidence either way
        return 1.0
    return float(wilcoxon(differences, alternative="greater").pvalue)


def evaluate_claim(claim: Claim, runs: list[Run], dataset: str) -> ClaimResult:
    """One claim on one dataset from the runs of its two configurations."""
    better, worse = _scores(runs, claim.better, dataset), _scores(runs, claim.worse, dataset)
    paired = sorted(better.keys() & worse.keys())
    diffs = [better[k] - worse[k] for k in paired]
    wins = sum(d > 0 for d in diffs)
    ties = sum(d == 0 for d in diffs)
    p_value = paired_p_value(diffs) if len(diffs) >= MIN_PAIRS else None
    metric = next((r.metric[dataset] for r in runs if r.usable and dataset in r.metric), "")
    return ClaimResult(claim.name, claim.statement, dataset, metric,
                       _side(claim.better, better), _side(claim.worse, worse), len(diffs),
                       wins, ties, len(diffs) - wins - ties, p_value,
                       _verdict(len(diffs), p_value))


def _verdict(pairs: int, p_value: float | None) -> str:
    if p_value is None:
        return (f"too few paired runs ({pairs}; {MIN_PAIRS} needed before a test can reach "
                f"p < {SIGNIFICANCE})")
    if p_value < SIGNIFICANCE:
        return f"holds (p = {p_value:.3g} < {SIGNIFICANCE})"
    return f"not shown (p = {p_value:.3g})"


def not_used(runs: list[Run]) -> list[dict[str, str]]:
    """Every run of the set that gives no figures: failed, unfinished, or missing altogether
    (a configuration × seed of the set without an experiment, for every seed seen)."""
    listed = [{"experiment": r.experiment, "state": r.state, "detail": r.detail}
              for r in runs if not r.usable]
    present = {r.experiment for r in runs}
    seeds = sorted({r.seed for r in runs})
    listed += [{"experiment": name, "state": "missing",
                "detail": "no experiment of this name on this commit"}
               for a in ABLATIONS for s in seeds
               if (name := experiment_name(a.name, s)) not in present]
    return listed


def machines(runs: list[Run]) -> list[dict[str, Any]]:
    """The distinct machines the usable runs were made on, each with its run count."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.usable:
            key = json.dumps(r.machine, sort_keys=True)
            seen.setdefault(key, {**r.machine, "runs": 0})["runs"] += 1
    return list(seen.values())


def _machine_line(m: dict[str, Any]) -> str:
    if not m.get("cpu"):
        return f"not recorded ({m['runs']} runs; made before the report recorded machines)"
    device = m.get("gpu") or m.get("device", "?")
    return (f"{cpu_label(m)}, {m.get('threads')} threads, "
            f"torch {m.get('torch')}, {device}, {m.get('precision')} ({m['runs']} runs)")


def _fmt(side: Side) -> str:
    if side.mean is None:
        return f"no runs (`{side.config}`)"
    return f"{side.mean:.3f} ± {side.std:.3f} ({side.runs} runs, `{side.config}`)"


def _claims_table(results: list[ClaimResult]) -> list[str]:
    lines = ["| claim | better side: mean ± std | worse side: mean ± std | paired wins / ties "
             "/ losses | paired test |", "|---|---|---|---|---|"]
    lines += [f"| {r.statement} | {_fmt(r.better)} | {_fmt(r.worse)} | "
              f"{r.wins} / {r.ties} / {r.losses} of {r.pairs} | {r.verdict} |" for r in results]
    return lines


#: rows (pretrained: "none" is random initialisation) and columns (fine-tuned) of the table
PRETRAINED = ("av", "video", "audio", "none")
FINETUNED = ("av", "video", "audio")


def modality_cells(runs: list[Run], dataset: str) -> dict[tuple[str, str], list[float]]:
    """``(pretrained, fine-tuned) → every seed × fold score`` of the modality-table runs."""
    cells: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        if r.usable and r.modalities and in_modality_table(r.config):
            cells.setdefault(r.modalities, []).extend(
                v for (ds, _), v in sorted(r.scores.items()) if ds == dataset)
    return {k: v for k, v in cells.items() if v}


def _modality_table(runs: list[Run], dataset: str) -> list[str]:
    cells = modality_cells(runs, dataset)
    if not cells:
        return []
    lines = ["| pretrained ↓ / fine-tuned → | " + " | ".join(FINETUNED) + " |",
             "|---" * (len(FINETUNED) + 1) + "|"]
    for pre in PRETRAINED:
        row = [_cell(v) + f" ({len(v)})"
               if (v := cells.get((pre, fine))) else "–" for fine in FINETUNED]
        if any(c != "–" for c in row):
            label = "nothing (random init)" if pre == "none" else pre
            lines.append(f"| {label} | " + " | ".join(row) + " |")
    return ["### Pretraining × fine-tuning modality", "",
            "Mean ± std over seeds × folds (number of runs); `none` is random initialisation.",
            "", *lines, ""]


def _stage_table(runs: list[Run], dataset: str, split: str) -> list[str]:
    """Per configuration, each fine-tuning stage's selected model's ``validation`` or ``test``
    score (mean over folds, then mean ± std over seeds) and how the last stage compares with the
    first: per seed, and per seed × fold with a one-sided Wilcoxon test of the paired folds."""
    attr = {"validation": "val_by_stage", "test": "test_by_stage"}[split]
    lines = []
    for config in [a.name for a in ABLATIONS]:
        by_run = [getattr(r, attr)[dataset] for r in runs
                  if r.usable and r.config == config and dataset in getattr(r, attr)]
        # the stages every seed ran; config keeps finetune.stages in name order, the run order
        stages = sorted(set.intersection(*(set(v) for v in by_run))) if by_run else []
        if not stages:
            continue
        cells = [_cell(_fold_mean(v[s]) for v in by_run) for s in stages]
        gain = _stage_gain(by_run, stages[0], stages[-1]) if len(stages) > 1 else "– | –"
        lines.append(f"| {config} | {len(by_run)} | " + " → ".join(
            f"{s} {c}" for s, c in zip(stages, cells)) + f" | {gain} |")
    if not lines:
        return []
    caveat = ("these are the scores epochs were selected on, so each is an optimistic estimate"
              if split == "validation" else
              "each stage's model was selected on validation and nothing is chosen on these")
    return [f"### {split.capitalize()} by fine-tuning stage", "",
            f"Each stage's selected model's {split} score, mean over folds, then mean ± std over "
            f"seeds; {caveat}. The last stage against the first: the mean gain and in how many "
            f"seeds it is positive, then the seed × fold pairs (higher / equal / lower) and "
            f"their {TEST_NAME} p.", "",
            f"| configuration | seeds | {split} by stage | last − first, per seed | per fold |",
            "|---|---|---|---|---|", *lines, ""]


def _fold_mean(by_fold: dict[int, float]) -> float:
    return float(np.mean(list(by_fold.values())))


def _stage_gain(by_run: list[dict[str, dict[int, float]]], first: str, last: str) -> str:
    """The per-seed and per-fold comparison cells of the last stage against the first."""
    gains = [_fold_mean(v[last]) - _fold_mean(v[first]) for v in by_run]
    diffs = [v[last][f] - v[first][f] for v in by_run for f in sorted(v[first].keys() & v[last])]
    up, same = sum(d > 0 for d in diffs), sum(d == 0 for d in diffs)
    p = (f"p = {paired_p_value(diffs):.3g}" if len(diffs) >= MIN_PAIRS
         else f"no test below {MIN_PAIRS} pairs")
    return (f"{np.mean(gains):+.3f}, higher in {sum(g > 0 for g in gains)} of {len(gains)} | "
            f"{up} / {same} / {len(diffs) - up - same} of {len(diffs)}, {p}")


def _runs_table(runs: list[Run], dataset: str) -> list[str]:
    folds = sorted({f for r in runs if r.usable for ds, f in r.scores if ds == dataset})
    lines = ["| configuration | seed | " + " | ".join(f"fold {f}" for f in folds) + " |",
             "|---" * (len(folds) + 2) + "|"]
    for r in sorted((r for r in runs if r.usable), key=lambda r: (r.config, r.seed)):
        cells = [f"{r.scores[(dataset, f)]:.3f}" if (dataset, f) in r.scores else "–"
                 for f in folds]
        lines.append(f"| {r.config} | {r.seed} | " + " | ".join(cells) + " |")
    return lines


def _plot(runs: list[Run], dataset: str, metric: str) -> Path | None:
    """One dot per seed × fold run for each configuration, its mean as a bar."""
    configs = [a.name for a in ABLATIONS if _scores(runs, a.name, dataset)]
    if not configs:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(configs), 3.6))
    rng = np.random.default_rng(0)  # jitter only, so the figure is reproducible
    for x, config in enumerate(configs):
        values = list(_scores(runs, config, dataset).values())
        ax.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, s=14, alpha=0.7)
        ax.hlines(np.mean(values), x - 0.3, x + 0.3, color="black", linewidth=1.5)
    ax.set_xticks(range(len(configs)), configs, rotation=30, ha="right")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{dataset}: one dot per seed × fold run, line = mean", fontsize=10)
    return save_figure(fig, Path(CLAIMS_OUTPUTS["plots"]) / f"{dataset}.png")


def write_claims(runs: list[Run], baseline: str = "") -> Path:
    """Compute every claim on every dataset the runs cover and write the report, the metrics
    and the figures; returns the report path."""
    datasets = sorted({ds for r in runs if r.usable for ds, _ in r.scores})
    results = [evaluate_claim(c, runs, ds) for ds in datasets for c in CLAIMS]
    skipped = not_used(runs)
    lines = ["# The paper's claims on this commit's ablation experiments", "",
             f"Generated by `avfmae claims` from the DVC experiments of commit "
             f"`{baseline[:10] or '?'}` (`dvc exp show`): {sum(r.usable for r in runs)} "
             "finished runs. Scores are each fold's test figure of the model selected on "
             "validation; a side's mean ± std is over all its seeds × folds, pairs share "
             f"dataset, seed and fold; test: {TEST_NAME}, significance level {SIGNIFICANCE}.",
             "", "Made on: " + ("; ".join(_machine_line(m) for m in machines(runs)) or "–"), ""]
    for ds in datasets:
        metric = next((r.metric for r in results if r.dataset == ds), "")
        figure = _plot(runs, ds, metric)
        lines += [f"## {ds} (test {metric})", "", *_claims_table(
            [r for r in results if r.dataset == ds]), "", *_modality_table(runs, ds),
            *_stage_table(runs, ds, "validation"), *_stage_table(runs, ds, "test"),
            "### Runs",
            "", *_runs_table(runs, ds), ""]
        if figure is not None:
            lines += [f"![{ds}](../{figure.as_posix()})", ""]
    lines += ["## Runs without figures", ""]
    lines += [f"- `{s['experiment']}`: {s['state']}" + (f" ({s['detail']})" if s["detail"]
                                                         else "") for s in skipped] or ["none"]
    report, metrics = Path(CLAIMS_OUTPUTS["report"]), Path(CLAIMS_OUTPUTS["metrics"])
    atomic_write_text(metrics, json.dumps(_json(results, runs, skipped, baseline), indent=2,
                                          allow_nan=False) + "\n")
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def _json(results: list[ClaimResult], runs: list[Run], skipped: list[dict[str, str]],
          baseline: str) -> dict[str, Any]:
    def clean(value: Any) -> Any:  # JSON has no NaN
        return None if isinstance(value, float) and math.isnan(value) else value

    return {"baseline": baseline, "test": TEST_NAME, "significance": SIGNIFICANCE,
            "min_pairs": MIN_PAIRS, "machines": machines(runs),
            "claims": [{k: clean(v) for k, v in asdict(r).items()} for r in results],
            "modality_table": {ds: {f"{pre}/{fine}": dict(zip(("mean", "std"), _mean_std(v)),
                                                          runs=len(v))
                                    for (pre, fine), v in sorted(modality_cells(runs, ds).items())}
                               for ds in sorted({d for r in runs if r.usable
                                                 for d, _ in r.scores})},
            "runs": [{"experiment": r.experiment, "config": r.config, "seed": r.seed,
                      "scores": {f"{ds}/fold{f}": s for (ds, f), s in sorted(r.scores.items())},
                      "val_by_stage": r.val_by_stage, "test_by_stage": r.test_by_stage}
                     for r in runs if r.usable],
            "without_figures": skipped}
