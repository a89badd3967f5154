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

import copy

import numpy as np
from sklearn.base import clone

from diffad.inference.fdr import benjamini_hochberg

__all__ = ["ConformalDetector", "benjamini_hochberg", "conformal_p_values"]


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
    cal = _check_scores(calibration_scores, "calibration scores")
    s = _check_scores(scores, "scores")
    cal_sorted = np.sort(cal)
    # #{cal >= s} = n_cal - #{cal < s}; searchsorted(side="left") counts cal < s in O(log n).
    n_greater_equal = cal.size - np.searchsorted(cal_sorted, s, side="left")
    return (1.0 + n_greater_equal) / (cal.size + 1.0)


def _check_scores(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} are empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


class ConformalDetector:
    """Wrap a PyOD-style detector so that it returns conformal p-values.

    ``fit`` splits the (normal) training rows at random into a part that fits a copy of the
    detector and a calibration part whose scores define the p-values. The rows given to
    ``fit`` must be normal (one-class setting); with contaminated training data the p-values
    are conservative only if anomalies in the calibration part are rare.

    Parameters
    ----------
    detector : estimator
        Any object with ``fit(X)`` and ``decision_function(X)`` (higher = more anomalous),
        e.g. a PyOD detector or one of ``diffad.tabular``. It is cloned, never modified.
    calibration_fraction : float
        Share of the training rows held out for calibration, in (0, 1).
    random_state : int or None
        Seed of the train/calibration split.

    Attributes
    ----------
    detector_ : estimator
        The fitted copy.
    calibration_scores_ : ndarray of shape (n_cal,)
        Scores of the calibration rows.
    """

    def __init__(
        self, detector, calibration_fraction: float = 0.5, random_state: int | None = None
    ) -> None:
        self.detector = detector
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> ConformalDetector:
        """Fit the detector on one part of ``X`` and score the other (calibration) part.

        Raises
        ------
        ValueError
            If ``calibration_fraction`` is not in (0, 1), ``X`` is not a finite 2-D array,
            or either part would be empty.
        """
        if not 0.0 < float(self.calibration_fraction) < 1.0:
            raise ValueError(
                f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}"
            )
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n x d), got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or infinite values")
        n_cal = int(round(self.calibration_fraction * len(X)))
        if n_cal < 1 or n_cal >= len(X):
            raise ValueError(
                f"{len(X)} rows with calibration_fraction={self.calibration_fraction} leave "
                f"{n_cal} calibration and {len(X) - n_cal} training rows; both must be >= 1"
            )
        perm = np.random.default_rng(self.random_state).permutation(len(X))
        cal, train = perm[:n_cal], perm[n_cal:]
        self.detector_ = _copy_estimator(self.detector)
        self.detector_.fit(X[train])
        self.calibration_scores_ = _check_scores(
            self.detector_.decision_function(X[cal]), "calibration scores"
        )
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores of the fitted detector (higher = more anomalous)."""
        self._check_fitted()
        return np.asarray(self.detector_.decision_function(X), dtype=np.float64)

    def p_values(self, X: np.ndarray) -> np.ndarray:
        """Conformal p-values of the rows of ``X`` (small = unlike the calibration normals)."""
        scores = self.decision_function(X)  # raises first when not fitted
        return conformal_p_values(self.calibration_scores_, scores)

    def select(self, X: np.ndarray, q: float = 0.1) -> np.ndarray:
        """Rows of ``X`` flagged as anomalies by Benjamini-Hochberg at FDR level ``q``."""
        return benjamini_hochberg(self.p_values(X), q)

    def _check_fitted(self) -> None:
        if not hasattr(self, "calibration_scores_"):
            raise ValueError("this ConformalDetector is not fitted yet; call fit(X) first")


def _copy_estimator(estimator):
    """An unfitted copy: ``sklearn.base.clone`` when the estimator supports it."""
    try:
        return clone(estimator)
    except (TypeError, RuntimeError):
        # Objects without get_params (not sklearn/PyOD style) are deep-copied instead.
        return copy.deepcopy(estimator)
