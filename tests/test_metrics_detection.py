"""ROC-AUC, average precision and F1@m against independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from diffad.metrics.detection import average_precision, detection_metrics, f1_at_m, roc_auc


def _data(seed: int = 0, n: int = 300, n_anom: int = 30):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[rng.choice(n, n_anom, replace=False)] = 1
    s = rng.normal(size=n) + 1.2 * y
    return y, s


def test_roc_auc_is_mann_whitney_u():
    for seed in range(5):
        y, s = _data(seed)
        u = mannwhitneyu(s[y == 1], s[y == 0]).statistic
        assert roc_auc(y, s) == pytest.approx(u / (30 * 270))
    y, s = _data()
    assert roc_auc(y, -s) == pytest.approx(1 - roc_auc(y, s))


def test_average_precision_by_definition():
    # Distinct scores: AP = mean over anomalies of the precision at the anomaly's rank.
    y, s = _data(1)
    order = np.argsort(-s)
    hits = np.cumsum(y[order])
    ranks = np.flatnonzero(y[order]) + 1
    expected = np.mean(hits[ranks - 1] / ranks)
    assert average_precision(y, s) == pytest.approx(expected)


def test_f1_at_m_top_m_rule():
    y, s = _data(2)
    top = np.argsort(-s)[:30]
    hits = y[top].sum()
    assert f1_at_m(y, s) == pytest.approx(hits / 30)  # precision = recall at m
    assert f1_at_m(y, y + 0.0) == 1.0
    assert set(detection_metrics(y, s)) == {"roc_auc", "ap", "f1"}


def test_errors():
    y, s = _data()
    with pytest.raises(ValueError, match="single class"):
        roc_auc(np.zeros(10), np.arange(10.0))
    s_nan = s.copy()
    s_nan[3] = np.nan
    for fn in (roc_auc, average_precision, f1_at_m):
        with pytest.raises(ValueError, match="NaN"):
            fn(y, s_nan)
    with pytest.raises(ValueError, match="entries"):
        roc_auc(y, s[:-1])
    with pytest.raises(ValueError, match="binary"):
        f1_at_m(y * 2, s)
    with pytest.raises(ValueError, match="empty"):
        average_precision([], [])
