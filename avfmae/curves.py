"""Training curves, written live through dvclive while a stage trains.

One folder per training stage holds dvclive's files: ``metrics.json`` (the latest values) and
``plots/metrics/<name>.tsv`` (``step`` and the value), which ``dvc plots show`` draws. Names are
``train/<loss>``, ``val/<metric>`` and ``lr``. A resumed run rewrites the folder from the records
its checkpoint restored, so the curves stay whole even though DVC deletes a stage's outputs
before it reruns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from avfmae.errors import UserError

if TYPE_CHECKING:
    from dvclive import Live

__all__ = ["curve_name", "open_curves", "log_record", "read_curves"]

# record keys that are the x axis or bookkeeping, not curves
_NOT_CURVES = ("epoch", "step")


def curve_name(key: str) -> str:
    """The dvclive name of a record key: ``val_uar`` → ``val/uar``, ``loss`` → ``train/loss``,
    ``lr`` → ``lr``."""
    if key == "lr":
        return key
    if key.startswith("val_"):
        return f"val/{key.removeprefix('val_')}"
    return f"train/{key}"


def open_curves(folder: Path, records: Iterable[dict[str, float]]) -> Live:
    """A fresh dvclive logger in ``folder``, with ``records`` (restored by a resume) replayed."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        # no experiment saving and no dvc.yaml edits: dvc.yaml is generated from the stage table
        live = Live(str(folder), save_dvc_exp=False, dvcyaml=False, report=None)
    except SCMError as err:  # dvclive reads the commit it runs on
        raise UserError(f"{folder}: dvclive cannot log here ({err}); commit the checkout "
                        "once (`git commit`) and rerun") from None
    for record in records:
        log_record(live, record)
    return live


def log_record(live: Live, record: dict[str, float]) -> None:
    """Log one step's (or epoch's) record and advance to the next step."""
    for key, value in record.items():
        if key not in _NOT_CURVES:
            live.log_metric(curve_name(key), float(value))
    live.next_step()


def read_curves(folder: Path) -> pd.DataFrame:
    """The curves of ``folder`` as one frame: ``step`` plus one column per record key
    (``loss``, ``val_uar``, ``lr``, …); empty when the folder has none."""
    base = folder / "plots" / "metrics"
    columns = {}
    for path in sorted(base.rglob("*.tsv")):
        name = path.relative_to(base).with_suffix("").as_posix()
        key = name.removeprefix("train/").replace("val/", "val_", 1)  # curve_name, reversed
        columns[key] = pd.read_csv(path, sep="\t").set_index("step").iloc[:, 0]
    return pd.DataFrame(columns).rename_axis("step").reset_index() if columns else pd.DataFrame()
