"""Row-level detection metrics: ROC-AUC, average precision, F1 at the true anomaly count."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

__all__ = ["average_precision", "detection_metrics", "f1_at_m", "roc_auc"]


def _check(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} entries but scores has {s.size}")
    if y.size == 0:
        raise ValueError("empty inputs")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    labels = np.unique(y)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"y_true must be binary 0/1, found {labels[:10]}")
    if labels.size < 2:
        raise ValueError("y_true holds a single class; the metric is undefined")
    return y.astype(np.int64), s


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (higher score = more anomalous; label 1 = anomaly)."""
    y, s = _check(y_true, scores)
    return float(roc_auc_score(y, s))


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve), as in scikit-learn."""
    y, s = _check(y_true, scores)
    return float(average_precision_score(y, s))


def f1_at_m(y_true: np.ndarray, scores: np.ndarray) -> float:
    """F1 when the m highest-scored rows are called anomalous, m = the true anomaly count.

    This is the F1 of the DTE paper's code (``low_density_anomalies``). At this operating
    point precision = recall = F1. Ties at the cut are broken by ``argpartition`` order.
    """
    y, s = _check(y_true, scores)
    m = int(y.sum())
    pred = np.zeros_like(y)
    pred[np.argpartition(-s, m - 1)[:m]] = 1
    return float(f1_score(y, pred))


def detection_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``{"roc_auc", "ap", "f1"}`` for one set of scores."""
    return {
        "roc_auc": roc_auc(y_true, scores),
        "ap": average_precision(y_true, scores),
        "f1": f1_at_m(y_true, scores),
    }
