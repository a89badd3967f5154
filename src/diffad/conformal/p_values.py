"""Split-conformal p-values for any anomaly detector whose higher score means more anomalous.

For calibration scores s_1..s_n of held-out normal rows and a new score s(x),

    p(x) = (1 + #{i : s_i >= s(x)}) / (n + 1).

If the calibration rows and a new normal row are exchangeable (same distribution, the
detector fit on other rows), P(p(x) <= a) <= a for every a in [0, 1] exactly, in finite
samples; ties only make the p-value larger. The p-values of a batch are positively
dependent (they share the calibration set) in the PRDS sense, so Benjamini-Hochberg on them
controls the false-discovery rate (Bates et al., 2023, "Testing for outliers with conformal
p-values").
"""

from __future__ import annotations

import numpy as np


def conformal_p_values(calibration_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Split-conformal p-values of ``scores`` against ``calibration_scores``.

    Parameters
    ----------
    calibration_scores : array-like of shape (n_cal,)
        Scores of held-out normal rows (higher = more anomalous).
    scores : array-like of shape (m,)
        Scores of the rows to test.

    Returns
    -------
    p : ndarray of shape (m,)
        ``(1 + #{cal >= score}) / (n_cal + 1)``, in [1/(n_cal+1), 1].

    Raises
    ------
    ValueError
        If either input is empty, not 1-D, or holds NaN/inf.
    """
    cal = check_scores(calibration_scores, "calibration scores")
    s = check_scores(scores, "scores")
    cal_sorted = np.sort(cal)
    # #{cal >= s} = n_cal - #{cal < s}; searchsorted(side="left") counts cal < s in O(log n).
    n_greater_equal = cal.size - np.searchsorted(cal_sorted, s, side="left")
    return (1.0 + n_greater_equal) / (cal.size + 1.0)


def check_scores(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} are empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr
