"""Levelled dimensional tasks (AVCAffe): D dimensions classified into L levels each by one head
of D·L outputs — loss, mixing, metrics, selection, predictions, evaluate/report outputs, the
model card and ``avfmae predict``'s output names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fixed_heads import FixedHeads

from avfmae import pipeline
from avfmae.config import load_params
from avfmae.eval.evaluate import _write_results
from avfmae.eval.inference import task_metrics, window_average
from avfmae.eval.model_card import model_card
from avfmae.eval.predict import _output_names, _predicted
from avfmae.eval.report import _dataset_section
from avfmae.tasks import Task, task_of
from avfmae.train.finetune import Objective, target_columns
from avfmae.train.losses import soft_target_cross_entropy
from avfmae.train.mixup import MixupCutmix, joint_levels, level_marginals

LEVELS = ("1", "2", "3", "4", "5")
AV5 = Task("av5", "DEA", LEVELS, dimensions=("arousal", "valence"))


def test_avcaffe_is_levelled_and_selects_on_mean_weighted_f1(write_params):
    params = load_params(write_params())
    for name, dims in (("avcaffe", ("arousal", "valence")),
                       ("synthetic_av5", ("arousal", "valence")),
                       ("synthetic_valence5", ("valence",))):
        task = task_of(params, name)
        assert not task.regression and task.levelled and task.dimensions == dims
        assert task.names == LEVELS and task.outputs == 5 * len(dims)
        assert task.output_shape == (len(dims), 5)
        assert task.target_columns == tuple(f"l_{d}" for d in dims)
        assert task.selection_metric == "weighted_f1"
    assert task_of(params, "synthetic_va").selection_metric == "ccc"


def test_two_dimension_loss_is_the_mean_of_the_two_cross_entropies(write_params):
    """Mixing off: the objective on a levelled head = mean over dimensions of the label-smoothed
    cross-entropy of that dimension's 5 logits."""
    params = load_params(write_params({"finetune.s3.mixup": 0.0, "finetune.s3.cutmix": 0.0,
                                       "finetune.s3.label_smoothing": 0.1,
                                       "finetune.s3.unimodal_loss": 0.0}))
    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    levels = torch.tensor([[0, 4], [2, 2], [4, 1], [1, 3]])
    batch = {"dataset": ["av5"] * 4, "video": torch.zeros(4, 1), "audio": torch.zeros(4, 1),
             "label": torch.full((4,), -1), "index": torch.arange(4),
             "target": levels.float()}
    loss = Objective(params, params.finetune.s3, {"av5": AV5}, rank=0)(
        FixedHeads({"av5": logits}), batch, 0, torch.device("cpu"))
    per_dim = [F.cross_entropy(logits[:, 5 * d:5 * d + 5], levels[:, d], label_smoothing=0.1)
               for d in range(2)]
    assert loss.item() == pytest.approx(((per_dim[0] + per_dim[1]) / 2).item(), rel=1e-5)
    # not the 10-way cross-entropy of one flat softmax
    flat = soft_target_cross_entropy(logits, F.one_hot(levels[:, 0], 10).float())
    assert loss.item() != pytest.approx(flat.item(), rel=1e-3)


def test_pooled_levelled_and_regression_heads_read_their_own_columns():
    tasks = {"ww": Task("ww", "DEA", ("arousal", "valence", "dominance"), True), "av5": AV5}
    assert target_columns(tasks) == ["t_arousal", "t_valence", "t_dominance",
                                     "l_arousal", "l_valence"]


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixed_joint_levels_give_each_dimensions_mixed_smoothed_targets(mode: str):
    """Mixing L**D joint classes and taking marginals = mixing each dimension on its own
    with the same λ and partner."""
    levels = torch.tensor([[0, 4], [2, 2], [4, 1], [1, 3]])
    video = torch.rand(4, 3, 2, 8, 8)
    alphas = {"mixup_alpha": 0.8, "cutmix_alpha": 0.0} if mode == "mixup" else \
        {"mixup_alpha": 0.0, "cutmix_alpha": 1.0}
    joint = MixupCutmix(25, label_smoothing=0.1, seed=3, **alphas)
    _, _, soft = joint(video, None, joint_levels(levels, 5))
    marginals = level_marginals(soft, 2, 5)
    assert marginals.shape == (4, 2, 5)
    for d in range(2):
        alone = MixupCutmix(5, label_smoothing=0.1, seed=3, **alphas)
        _, _, expected = alone(video, None, levels[:, d])
        torch.testing.assert_close(marginals[:, d], expected)
    assert 0.0 < joint.last_lam < 1.0
    # one dimension: the joint class is the level, its marginal the mixed target itself
    torch.testing.assert_close(level_marginals(soft[:, :5], 1, 5)[:, 0], soft[:, :5])


def test_predictions_are_per_dimension_probabilities_averaged_over_windows():
    torch.manual_seed(1)
    logits = torch.randn(3, 2, 10)  # (B, W, D·L)
    out = window_average(logits, AV5)
    assert out.shape == (3, 2, 5)
    torch.testing.assert_close(out.sum(-1), torch.ones(3, 2))
    expected = logits.view(3, 2, 2, 5).softmax(-1).mean(1)
    torch.testing.assert_close(out, expected)
    single = Task("cea", "CEA", ("a", "b", "c"))
    assert window_average(torch.randn(3, 2, 3), single).shape == (3, 3)


def _predictions() -> dict[str, np.ndarray]:
    """4 clips; arousal all right, valence right for 2 of 4."""
    target = np.array([[0, 1], [1, 1], [2, 3], [2, 4]])
    predicted = np.array([[0, 1], [1, 0], [2, 3], [2, 0]])
    output = np.full((4, 2, 5), 0.05)
    for i, row in enumerate(predicted):
        output[i, [0, 1], row] = 0.8
    return {"index": np.arange(4), "output": output, "label": np.full(4, -1),
            "target": target.astype(np.float32)}


def test_metrics_per_dimension_and_their_mean():
    m = task_metrics(AV5, _predictions())
    assert m["weighted_f1_arousal"] == pytest.approx(1.0)
    assert m["war_valence"] == pytest.approx(0.5)
    # valence: levels 2 (2 clips, 1 right: F1 2/3), 4 (right: 1), 5 (wrong: 0); predicted 1
    # twice (never true: F1 0 with no support)
    assert m["weighted_f1_valence"] == pytest.approx((2 * 2 / 3 + 1 + 0) / 4)
    assert m["weighted_f1"] == pytest.approx((1.0 + m["weighted_f1_valence"]) / 2)
    assert m["uar"] == pytest.approx((m["uar_arousal"] + m["uar_valence"]) / 2)
    assert np.asarray(m["confusion_matrix"]["valence"]).shape == (5, 5)
    assert np.asarray(m["confusion_matrix"]["arousal"]).trace() == 4


def test_evaluate_outputs_and_report_section_per_dimension(write_params, tmp_path: Path,
                                                           monkeypatch):
    params = load_params(write_params({"data.folds": [1, 2]}))
    monkeypatch.chdir(tmp_path)
    task = Task("synthetic_av5", "DEA", LEVELS, dimensions=("arousal", "valence"))
    rows = pd.DataFrame({"clip_id": ["c0", "c1", "c2", "c3"]})
    for fold in (1, 2):
        for stage in params.finetune.stages:
            path = pipeline.path(f"finetune_{stage}", "selection", params, ds=task.dataset,
                                 fold=fold)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"selection_metric": "weighted_f1", "best_epoch": 0,
                                        "val_best": {"weighted_f1": 0.5}}))
        pred = _predictions()
        metrics = task_metrics(task, pred)
        first_stage = {**metrics, "weighted_f1": 0.25}
        selections = {st: {"best_epoch": 0, "selection_metric": "weighted_f1",
                           "val_best": {"weighted_f1": 0.5}} for st in params.finetune.stages}
        by_stage = {st: first_stage if st == params.finetune.stages[0] else metrics
                    for st in params.finetune.stages}
        _write_results(params, task.dataset, fold, task, selections, rows,
                       {"best": metrics, "last": metrics}, {"best": pred, "last": pred},
                       by_stage)
    test = json.loads(pipeline.path("evaluate", "test", params, ds=task.dataset,
                                    fold=1).read_text())
    assert test["dimensions"] == ["arousal", "valence"]
    assert set(test["confusion_matrix"]) == {"arousal", "valence"}
    table = pd.read_csv(pipeline.path("evaluate", "confusion", params, ds=task.dataset,
                                      fold=1), dtype=str)
    assert list(table.columns) == ["clip_id", "dimension", "actual", "predicted"]
    valence = table[table["dimension"] == "valence"]
    assert list(valence["actual"]) == ["2", "2", "4", "5"]
    assert list(valence["predicted"]) == ["2", "1", "4", "1"]

    summary: dict = {}
    text = "\n".join(_dataset_section(params, task.dataset, summary))
    assert "### Test per dimension" in text
    later = {"1": metrics["weighted_f1"], "2": metrics["weighted_f1"]}
    assert summary[task.dataset]["test_by_stage"] == {
        "s1": {"1": 0.25, "2": 0.25}, "s2": later, "s3": later}
    assert "### Test score by fine-tuning stage" in text
    assert "| arousal | 1.0000 ± 0.0000 |" in text
    per_dim = summary[task.dataset]["test_by_dimension"]
    assert set(per_dim) == {"arousal", "valence"} and set(per_dim["valence"]) == {
        "weighted_f1", "uar"}
    assert "weighted_f1_valence" not in summary[task.dataset]["test"]  # only in its table
    assert "weighted_f1" in summary[task.dataset]["test"]
    for dim in ("arousal", "valence"):
        assert f"synthetic_av5_confusion_{dim}.png" in text
    assert "synthetic_av5_confusion.png" not in text and "scatter" not in text
    assert "ccc" not in text


def test_model_card_and_predict_name_outputs_per_dimension(write_params):
    params = load_params(write_params())
    card = model_card(params, task_of(params, "avcaffe"), stage="s3", fold=1)
    assert card.dimensions == ["arousal", "valence"] and card.outputs == 10
    assert not card.regression and card.names == list(LEVELS)
    names = _output_names(card)
    assert names[:2] == ["prob_arousal_1", "prob_arousal_2"] and names[-1] == "prob_valence_5"
    probs = np.array([0.1, 0.1, 0.41, 0.2, 0.19, 0.05, 0.55, 0.1, 0.1, 0.2])
    assert _predicted(card, probs) == {
        "predicted": "arousal=3 (p=0.41), valence=2 (p=0.55)",
        "predicted_arousal": "3", "predicted_valence": "2"}
    cea = model_card(params, task_of(params, "synthetic"), stage="s3", fold=1)
    assert cea.dimensions == [] and cea.outputs == len(cea.names)
    assert _predicted(cea, np.eye(len(cea.names))[2]) == {"predicted": cea.names[2]}
