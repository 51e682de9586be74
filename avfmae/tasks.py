"""What each labeled dataset asks of the model, and the clips of a fold's split.

Shared by training (the heads, losses and model selection of the fine-tuning stages) and
evaluation (metrics and predictions of the test split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from avfmae import pipeline
from avfmae.config import Params
from avfmae.data import registry
from avfmae.data.clips import load_split
from avfmae.errors import UserError

# the validation metric each kind of task selects its epoch on: the protocols' table metric
# (weighted F1 for levelled dimensions — their mean over dimensions —, UF1 for micro-expressions)
SELECTION_METRIC = {"CEA": "uar", "MER": "macro_f1", "DEA": "ccc", "DEA-levels": "weighted_f1"}


@dataclass(frozen=True)
class Task:
    """What a dataset asks of the model: family, output size, label or target names.

    ``regression``: continuous targets (``names`` = target dimensions). Otherwise classes:
    ``names`` = label names, or for a levelled dimensional dataset the level names shared by
    its ``dimensions``, each classified on its own: the head's outputs are viewed as
    ``(D, L)`` logits, D = dimensions, L = levels (a single label has no dimensions).
    """

    dataset: str
    family: str
    names: tuple[str, ...]
    regression: bool = False
    dimensions: tuple[str, ...] = ()

    @property
    def levelled(self) -> bool:
        return bool(self.dimensions)

    @property
    def outputs(self) -> int:
        return len(self.names) * max(1, len(self.dimensions))

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One clip's prediction: ``(K,)``, or ``(D, L)`` level probabilities when levelled."""
        return (len(self.dimensions), len(self.names)) if self.levelled else (self.outputs,)

    @property
    def target_columns(self) -> tuple[str, ...]:
        """The clip-row columns training and evaluation read as the batch's ``target``: the
        regression values ``t_<dim>``, or a levelled task's level indices ``l_<dim>``."""
        if self.regression:
            return tuple(f"t_{n}" for n in self.names)
        return tuple(f"l_{d}" for d in self.dimensions)

    @property
    def selection_metric(self) -> str:
        if self.levelled:
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
        index_json = pipeline.path("index", "index", params, ds=dataset) / "index.json"
        if not index_json.is_file():
            raise UserError(f"{index_json} is missing: run `avfmae index {dataset}` first")
        names = json.loads(index_json.read_text())["labels"]
    if not names:
        raise UserError(f"{dataset}: neither the registry nor {dataset}'s index lists label names")
    dimensions = spec.targets if spec.levelled else ()
    return Task(dataset, spec.family, tuple(names), regression, tuple(dimensions))


def split_rows(params: Params, dataset: str, fold: int, part: str) -> pd.DataFrame:
    """Rows of the clip store of ``dataset`` in ``part`` of ``fold``; an empty part is an error."""
    try:
        rows = load_split(pipeline.path("preprocess", "clips", params, ds=dataset),
                          pipeline.path("index", "index", params, ds=dataset) / "splits.csv",
                          fold, part)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"{dataset} fold {fold} {part}: {err}") from None
    if rows.empty:
        raise UserError(f"{dataset} fold {fold}: the {part} split has no usable clip")
    return rows
