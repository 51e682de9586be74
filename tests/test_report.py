"""Report pieces that do not need a trained model: the MER pooled-over-folds figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from avfmae.config import load_params
from avfmae.eval.report import fold_predictions, pooled_table


def test_mer_figures_pool_the_folds_predictions(write_params, tmp_path: Path, monkeypatch):
    params = load_params(write_params({"data.folds": [1, 2]}))
    monkeypatch.chdir(tmp_path)
    out = Path("plots/evaluate/samm")
    out.mkdir(parents=True)
    pd.DataFrame({"clip_id": ["x1", "x2"], "actual": ["a", "b"], "predicted": ["a", "a"]}) \
        .to_csv(out / "fold1.csv", index=False)
    pd.DataFrame({"clip_id": ["y1", "y2"], "actual": ["b", "c"], "predicted": ["b", "c"]}) \
        .to_csv(out / "fold2.csv", index=False)
    row = pooled_table(fold_predictions(params, "samm"), ["a", "b", "c"]).loc["pooled"]
    # pooled: actual a b b c, predicted a a b c → recalls 1, 1/2, 1; F1 2/3, 2/3, 1
    assert row["uar"] == pytest.approx(5 / 6)
    assert row["war"] == pytest.approx(3 / 4)
    assert row["uf1"] == pytest.approx(7 / 9)
