"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from avfmae.eval import metrics as M

# 3 classes; class 2 is never predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 0, 0, 1, 1, 0, 1]


def test_confusion_matrix_rows_are_truth():
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, num_classes=3)
    assert cm.tolist() == [[2, 1, 0], [1, 1, 0], [2, 3, 0]]


def test_classification_metrics_by_hand_with_a_never_predicted_class():
    m = M.classification_metrics(Y_TRUE, Y_PRED, num_classes=3)
    # recalls: 2/3, 1/2, 0/5
    assert m["uar"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["war"] == pytest.approx(3 / 10)
    assert "micro_f1" not in m  # it would equal war
    # F1 = 2TP / (support + predicted): c0 4/(3+5), c1 2/(2+5), c2 0
    f1 = [4 / 8, 2 / 7, 0.0]
    assert m["per_class_f1"] == pytest.approx(f1)
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 5 * f1[2]) / 10)
    assert M.uar(Y_TRUE, Y_PRED) == pytest.approx(m["uar"])
    assert M.war(Y_TRUE, Y_PRED) == pytest.approx(0.3)


def test_uar_ignores_classes_absent_from_truth_but_macro_f1_counts_predicted_ones():
    y_true, y_pred = [0, 0, 1, 1], [0, 2, 1, 1]  # class 2 predicted, never true
    m = M.classification_metrics(y_true, y_pred, num_classes=4)
    assert m["uar"] == pytest.approx((1 / 2 + 1) / 2)
    # F1: c0 2/(2+1), c1 4/(2+2), c2 0 (predicted once), c3 unused
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 1) / 4)


def test_perfect_predictions():
    m = M.classification_metrics([0, 1, 2, 1], [0, 1, 2, 1])
    assert m["uar"] == m["war"] == m["macro_f1"] == m["weighted_f1"] == 1.0


def test_bad_class_ids_rejected():
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 2\)"):
        M.confusion_matrix([0, 2], [0, 1], num_classes=2)


def test_ccc_pcc_by_hand():
    p = np.array([1.0, 2.0, 3.0, 4.0])
    t = np.array([2.0, 2.0, 4.0, 4.0])
    # means 2.5, 3; population var p 1.25, t 1.0; cov = ((-1.5)(-1)+(-.5)(-1)+(.5)(1)+(1.5)(1))/4 = 1
    assert M.ccc(p, t) == pytest.approx(2 * 1.0 / (1.25 + 1.0 + 0.25))
    # unbiased: cov 4/3, var 5/3, 4/3
    assert M.ccc(p, t, ddof=1) == pytest.approx(2 * (4 / 3) / (5 / 3 + 4 / 3 + 0.25))
    assert M.pcc(p, t) == pytest.approx(1.0 / np.sqrt(1.25 * 1.0))
    assert M.ccc(t, t) == pytest.approx(1.0)
    assert M.ccc(-t, t) < 0


def test_ccc_of_constant_predictions():
    t = np.array([0.1, 0.5, 0.9, 0.3])
    assert M.ccc(np.full(4, 0.45), t) == 0.0
    assert M.ccc(np.full(4, 0.3), t) == 0.0
    assert M.pcc(np.full(4, 0.3), t) == 0.0
    assert M.ccc(np.full(4, 0.3), np.full(4, 0.3)) == 1.0
    assert M.ccc(np.full(4, 0.3), np.full(4, 0.2)) == 0.0


def test_regression_metrics_per_dimension():
    t = np.array([[0.1, 0.5], [0.4, 0.5], [0.9, 0.5]])
    p = np.array([[0.2, 0.4], [0.4, 0.6], [0.7, 0.5]])
    m = M.regression_metrics(p, t, names=["arousal", "valence"])
    assert m["arousal"]["mse"] == pytest.approx((0.01 + 0 + 0.04) / 3)
    assert m["arousal"]["mae"] == pytest.approx((0.1 + 0 + 0.2) / 3)
    assert m["arousal"]["rmse"] == pytest.approx(np.sqrt(0.05 / 3))
    assert m["valence"]["ccc"] == 0.0  # constant target, non-constant prediction
    assert m["valence"]["pcc"] == 0.0
    assert m["arousal"]["ccc"] == pytest.approx(M.ccc(p[:, 0], t[:, 0]))
    assert m["mean"]["mse"] == pytest.approx((m["arousal"]["mse"] + m["valence"]["mse"]) / 2)


def test_pooled_loso_metrics():
    folds = [([0, 1], [0, 0]), ([2, 2, 1], [2, 1, 1]), ([0], [0])]
    m = M.pooled_loso_metrics(folds, num_classes=3)
    # pooled: true 0,1,2,2,1,0 pred 0,0,2,1,1,0 → cm [[2,0,0],[1,1,0],[0,1,1]]
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert m["n"] == 6
    assert m["uar"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    f1 = [4 / (2 + 3), 2 / (2 + 2), 2 / (2 + 1)]
    assert m["uf1"] == pytest.approx(sum(f1) / 3)
    # pooling is not the mean of per-fold scores
    per_fold = np.mean([M.classification_metrics(t, p, 3)["macro_f1"] for t, p in folds])
    assert m["uf1"] != pytest.approx(per_fold)
