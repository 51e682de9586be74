"""The ablation set as DVC experiments: queue its configurations, read the finished runs back.

Queueing is ``dvc exp run --queue -n <config>-seed<k> -S key=value …`` per configuration and
seed; the user then runs the queue as DVC documents it (``dvc queue start -j 1`` or ``dvc exp
run --run-all -j 1``). A configuration that changes the stage graph (``finetune.init: random``
drops pretraining, ``finetune.stages: [s3]`` drops s1 and s2) cannot run with ``-S`` alone: the
check stage would rightly refuse the committed ``dvc.yaml``. DVC snapshots the workspace when it
queues, so for those configurations ``dvc.yaml`` is rendered for them just while they are
queued and put back at once; the experiment then carries its own graph.

Reading uses ``dvc exp show --json``: each experiment's params, its state (success, failed,
queued, running) and its ``metrics/summary.json``, whose ``test_by_fold`` holds the per-fold
test score, ``val_by_stage`` and ``test_by_stage`` each fine-tuning stage's selected model's
validation and test score per fold and ``machine`` the machine the run was made on (written by
the report stage).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avfmae.config import Params, params_from_dict, with_overrides
from avfmae.errors import UserError
from avfmae.eval.ablations import (ablation, experiment_name, parse_experiment_name,
                                   seed_overrides)
from avfmae.lock import claim, current_run, release
from avfmae.pipeline import render_dvc_yaml, stage, sync_generated_files

__all__ = ["Run", "queue_ablations", "read_runs", "runs_from_exp_show"]

log = logging.getLogger(__name__)

DVC_YAML = Path("dvc.yaml")
SUMMARY = stage("report").metrics["summary"]


@dataclass(frozen=True)
class Run:
    """One ablation experiment: which configuration and seed, how it ended, and its per-fold
    test scores ``(dataset, fold) → score`` (``metric`` names each dataset's score)."""

    experiment: str
    config: str
    seed: int
    state: str
    detail: str = ""
    scores: dict[tuple[str, int], float] = field(default_factory=dict)
    metric: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    #: (pretrained modality or "none" for random init, fine-tuned modality) from its params
    modalities: tuple[str, str] | None = None
    #: dataset → fine-tuning stage → fold → its selected model's validation score
    val_by_stage: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    #: the same model's test score (reported only: nothing is selected on it)
    test_by_stage: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state == "success" and bool(self.scores)


def _dvc() -> str:
    """The ``dvc`` of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def _call_dvc(args: list[str]) -> str:
    res = subprocess.run([_dvc(), *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed: "
                        f"{(res.stderr or res.stdout).strip()[-1500:]}")
    return res.stdout


def _cli_value(value: Any) -> str:
    """A value as DVC's ``-S`` parser (Hydra's override grammar) reads it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_cli_value(v) for v in value) + "]"
    return str(value)


@contextmanager
def _dvc_yaml_rendered_for(params: Params, base_text: str) -> Iterator[bool]:
    """``dvc.yaml`` rendered for ``params`` while the block runs, when its graph differs from
    the committed one; yields whether it did."""
    text = render_dvc_yaml(params)
    if text == base_text:
        yield False
        return
    DVC_YAML.write_text(text)
    try:
        yield True
    finally:
        DVC_YAML.write_text(base_text)


def queue_ablations(params_path: Path, configs: list[str], seeds: list[int]) -> list[str]:
    """Queue one DVC experiment per configuration and seed; returns their names.

    Every configuration is validated (and its graph rendered) before the first is queued, so
    a bad override queues nothing.
    """
    raw = yaml.safe_load(Path(params_path).read_text())
    stale = sync_generated_files(params_from_dict(raw), check=True)
    if stale:
        raise UserError(f"stale generated files: {', '.join(stale)}; run `avfmae pipeline` "
                        "and commit before queueing (experiments start from the commit)")
    planned = []
    for config in configs:
        for seed in seeds:
            overrides = {**ablation(config).overrides, **seed_overrides(seed)}
            planned.append((experiment_name(config, seed), overrides,
                            params_from_dict(with_overrides(raw, overrides))))
    base_text = DVC_YAML.read_text()
    holder = current_run()
    claim(holder)  # no pipeline run may read dvc.yaml while it is swapped
    try:
        for name, overrides, params in planned:
            sets = [a for k, v in overrides.items() for a in ("-S", f"{k}={_cli_value(v)}")]
            with _dvc_yaml_rendered_for(params, base_text) as own_graph:
                _call_dvc(["exp", "run", "--queue", "-n", name, *sets])
            log.info("queued %s%s", name, " (with its own dvc.yaml)" if own_graph else "")
    finally:
        release(holder)
    return [name for name, _, _ in planned]


def read_runs() -> tuple[list[Run], str]:
    """The ablation experiments of the current commit (``dvc exp show --json``) and its rev."""
    return runs_from_exp_show(json.loads(_call_dvc(["exp", "show", "--json"])))


def runs_from_exp_show(data: list[dict[str, Any]]) -> tuple[list[Run], str]:
    """Parse ``dvc exp show --json``: every experiment named like an ablation run, any state."""
    runs, baseline = [], ""
    for entry in data:
        if entry.get("rev") == "workspace":
            continue
        baseline = baseline or entry.get("rev", "")
        for exp in entry.get("experiments") or []:
            named = parse_experiment_name(exp.get("name"))
            if named is None:
                continue
            state = (exp.get("executor") or {}).get("state") or "success"
            for rev in exp.get("revs") or []:
                runs.append(_run(exp["name"], *named, state, rev))
    return runs, baseline


def _run(name: str, config: str, seed: int, state: str, rev: dict[str, Any]) -> Run:
    if rev.get("error"):
        return Run(name, config, seed, "failed", rev["error"].get("msg", ""))
    data = rev.get("data") or {}
    if state != "success":
        return Run(name, config, seed, state)
    mismatch = _params_mismatch(data.get("params", {}), config, seed)
    if mismatch:
        return Run(name, config, seed, "params differ from its name", mismatch)
    summary = (data.get("metrics", {}).get(SUMMARY) or {}).get("data") or {}
    scores, metric = _fold_scores(summary)
    if not scores:
        return Run(name, config, seed, "no per-fold results",
                   f"{SUMMARY} has no test_by_fold (made before it was added?)")
    return Run(name, config, seed, "success", scores=scores, metric=metric,
               machine=summary.get("machine", {}), modalities=_modalities(data.get("params", {})),
               val_by_stage=_by_stage(summary, "val_by_stage"),
               test_by_stage=_by_stage(summary, "test_by_stage"))


def _by_stage(summary: dict[str, Any], key: str) -> dict[str, dict[str, dict[int, float]]]:
    """dataset → stage → fold → score of a report summary's ``val_by_stage`` or
    ``test_by_stage`` (a summary made before they were kept per fold gives none)."""
    return {ds: {st: {int(f): float(v) for f, v in folds.items()} for st, folds in r[key].items()}
            for ds, r in summary.items() if isinstance(r, dict) and r.get(key)
            and all(isinstance(folds, dict) for folds in r[key].values())}


def _param(params: dict[str, Any], dotted: str) -> Any:
    """The value of a dotted key in an experiment's ``params.yaml`` (``None`` when absent)."""
    node: Any = (params.get("params.yaml") or {}).get("data") or {}
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _modalities(params: dict[str, Any]) -> tuple[str, str]:
    pretrained = ("none" if _param(params, "finetune.init") == "random"
                  else _param(params, "pretrain.modality"))
    return str(pretrained), str(_param(params, "finetune.modality"))


def _params_mismatch(params: dict[str, Any], config: str, seed: int) -> str:
    """Which of the configuration's overrides the experiment's params.yaml contradicts."""
    wrong = []
    for dotted, want in {**ablation(config).overrides, **seed_overrides(seed)}.items():
        node = _param(params, dotted)
        if node != want:
            wrong.append(f"{dotted} is {node!r}, not {want!r}")
    return "; ".join(wrong)


def _fold_scores(summary: dict[str, Any]) -> tuple[dict[tuple[str, int], float], dict[str, str]]:
    scores, metric = {}, {}
    for dataset, result in summary.items():
        by_fold = result.get("test_by_fold") if isinstance(result, dict) else None
        if not by_fold:
            continue
        name, folds = next(iter(by_fold.items()))
        metric[dataset] = name
        scores.update({(dataset, int(k)): float(v) for k, v in folds.items()})
    return scores, metric
