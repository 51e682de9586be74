"""Evaluation metrics in NumPy (docs/model.md §7, docs/design.md §8).

All scores are fractions in [0, 1] (CCC/PCC in [−1, 1]); multiply by 100 for tables. Compute
them on predictions gathered from every rank
(:func:`avfmae.train.distributed.gather_predictions`), never as an average of per-rank scores.

Categorical (CEA) — :func:`classification_metrics`:
    * ``war``: accuracy (weighted average recall);
    * ``uar``: mean recall over the classes **present in the ground truth**;
    * ``macro_f1``: mean per-class F1 over classes present in the ground truth or the predictions
      (a class predicted but never true counts with F1 = 0; as scikit-learn's default);
    * ``weighted_f1``: per-class F1 weighted by true support ("WA-F1");
    * the confusion matrix (rows = truth). Micro F1 is not listed: on single-label data it
      equals ``war``.

Dimensional (DEA) — :func:`regression_metrics`: per dimension CCC, PCC, MSE, MAE, RMSE.
:func:`ccc` is Lin's concordance ``2·cov / (σp² + σt² + (μp − μt)²)`` with population (1/n)
moments by default (``ddof=1`` uses n−1 for cov and variances, the mean term unchanged). When the
predictions are constant it is 0 (1 if the targets are the same constant); PCC is 0 when either
side is constant.

Micro-expression (MER) — :func:`pooled_loso_metrics`: UF1 (macro F1) and UAR over the
predictions of all leave-one-subject-out folds pooled together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "confusion_matrix",
    "classification_metrics",
    "uar",
    "war",
    "ccc",
    "pcc",
    "regression_metrics",
    "pooled_loso_metrics",
]


def _labels(y: Any) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array of class ids, got shape {a.shape}")
    return a.astype(np.int64)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """``int64 (K, K)``; entry ``[i, j]`` counts samples of true class i predicted as j."""
    t, p = _labels(y_true), _labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    k = num_classes if num_classes is not None else int(max(t.max(initial=-1),
                                                             p.max(initial=-1)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"class ids must lie in [0, {k})")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def _per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Recall, F1, true support, predicted count per class."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return recall, f1, support, predicted


def uar(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Unweighted average recall over the classes present in ``y_true``."""
    recall, _, support, _ = _per_class(confusion_matrix(y_true, y_pred, num_classes))
    present = support > 0
    return float(recall[present].mean()) if present.any() else 0.0


def war(y_true: Any, y_pred: Any) -> float:
    """Weighted average recall = accuracy."""
    t, p = _labels(y_true), _labels(y_pred)
    return float((t == p).mean()) if t.size else 0.0


def classification_metrics(
    y_true: Any, y_pred: Any, num_classes: int | None = None
) -> dict[str, Any]:
    """CEA metrics: ``uar``, ``war``, ``weighted_f1``, ``macro_f1`` (floats),
    ``per_class_recall``, ``per_class_f1`` (lists of K) and ``confusion_matrix`` (K×K list)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    recall, f1, support, predicted = _per_class(cm)
    present = support > 0
    used = present | (predicted > 0)
    n = support.sum()
    acc = float(np.trace(cm) / n) if n else 0.0
    return {
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "war": acc,
        "weighted_f1": float((f1 * support).sum() / n) if n else 0.0,
        "macro_f1": float(f1[used].mean()) if used.any() else 0.0,
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
        "confusion_matrix": cm.tolist(),
    }


def _columns(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(a.shape[0], -1) if a.ndim != 1 else a[:, None]


def _is_constant(col: np.ndarray) -> bool:
    return bool(np.all(col == col[0]))


def ccc(pred: Any, target: Any, ddof: int = 0) -> np.ndarray | float:
    """Concordance correlation coefficient per dimension (float for 1-D input).

    ``pred``/``target``: ``(n,)`` or ``(n, D)``. See the module doc for the estimator and the
    constant-prediction rule.
    """
    p, t = _columns(pred), _columns(target)
    if p.shape != t.shape or p.shape[0] < 1 + ddof:
        raise ValueError(f"need matching shapes with > {ddof} rows, got {p.shape}, {t.shape}")
    out = np.empty(p.shape[1])
    for d in range(p.shape[1]):
        pc, tc = p[:, d], t[:, d]
        if _is_constant(pc) or _is_constant(tc):
            out[d] = 1.0 if (_is_constant(pc) and _is_constant(tc) and pc[0] == tc[0]) else 0.0
            continue
        mp, mt = pc.mean(), tc.mean()
        n = pc.size - ddof
        cov = ((pc - mp) * (tc - mt)).sum() / n
        vp, vt = ((pc - mp) ** 2).sum() / n, ((tc - mt) ** 2).sum() / n
        out[d] = 2 * cov / (vp + vt + (mp - mt) ** 2)
    return float(out[0]) if np.ndim(pred) == 1 else out


def pcc(pred: Any, target: Any) -> np.ndarray | float:
    """Pearson correlation per dimension; 0 where either side is constant."""
    p, t = _columns(pred), _columns(target)
    out = np.zeros(p.shape[1])
    for d in range(p.shape[1]):
        pc, tc = p[:, d], t[:, d]
        if _is_constant(pc) or _is_constant(tc):
            continue
        pc, tc = pc - pc.mean(), tc - tc.mean()
        out[d] = (pc * tc).sum() / np.sqrt((pc ** 2).sum() * (tc ** 2).sum())
    return float(out[0]) if np.ndim(pred) == 1 else out


def regression_metrics(
    pred: Any, target: Any, names: Sequence[str] | None = None, ddof: int = 0
) -> dict[str, dict[str, float]]:
    """DEA metrics: ``{dim_name: {"ccc", "pcc", "mse", "mae", "rmse"}, "mean": {...}}``.

    ``names`` default to ``dim0, dim1, …``; ``"mean"`` averages each metric over dimensions.
    """
    p, t = _columns(pred), _columns(target)
    names = list(names) if names is not None else [f"dim{i}" for i in range(p.shape[1])]
    if len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} names for {p.shape[1]} dimensions")
    c = np.atleast_1d(ccc(p, t, ddof=ddof))
    r = np.atleast_1d(pcc(p, t))
    mse = ((p - t) ** 2).mean(axis=0)
    mae = np.abs(p - t).mean(axis=0)
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        out[name] = {"ccc": float(c[i]), "pcc": float(r[i]), "mse": float(mse[i]),
                     "mae": float(mae[i]), "rmse": float(np.sqrt(mse[i]))}
    out["mean"] = {k: float(np.mean([out[n][k] for n in names]))
                   for k in ("ccc", "pcc", "mse", "mae", "rmse")}
    return out


def pooled_loso_metrics(
    folds: Iterable[tuple[Any, Any]], num_classes: int | None = None
) -> dict[str, Any]:
    """MER: UF1 (macro F1) and UAR over all leave-one-subject-out folds pooled.

    ``folds``: ``(y_true, y_pred)`` per fold. Returns ``{"uf1", "uar", "war", "n",
    "confusion_matrix"}``.
    """
    pairs = [(_labels(t), _labels(p)) for t, p in folds]
    if not pairs:
        raise ValueError("no folds to pool")
    t = np.concatenate([a for a, _ in pairs])
    p = np.concatenate([b for _, b in pairs])
    m = classification_metrics(t, p, num_classes)
    return {"uf1": m["macro_f1"], "uar": m["uar"], "war": m["war"], "n": int(t.size),
            "confusion_matrix": m["confusion_matrix"]}
