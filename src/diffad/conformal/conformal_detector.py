"""Conformal wrapper: p-values and FDR-controlled selection from any anomaly detector."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_array, check_is_fitted

from diffad.conformal.fdr import benjamini_hochberg
from diffad.conformal.p_values import check_scores, conformal_p_values


class ConformalDetector(BaseEstimator):
    """Wrap a PyOD-style detector so that it returns conformal p-values.

    ``fit`` splits the (normal) training examples at random into a part that fits a copy of
    the detector and a calibration part whose scores define the p-values
    (:func:`~diffad.conformal.p_values.conformal_p_values`). The examples given to ``fit``
    must be normal (one-class setting); with contaminated training data the p-values are
    conservative only if anomalies in the calibration part are rare. Examples are the rows
    of a table or the images of a stack: anything the detector's ``fit`` and
    ``decision_function`` take, indexed along the first axis.

    Parameters
    ----------
    detector : estimator
        Any object with ``fit(X)`` and ``decision_function(X)`` (higher = more anomalous),
        e.g. a PyOD detector, one of ``diffad.tabular`` or an image localiser. It is cloned,
        never modified.
    calibration_fraction : float
        Share of the training rows held out for calibration, in (0, 1).
    random_state : int or None
        Seed of the train/calibration split.
    prefit : bool
        The detector is already fitted (on other data): ``fit(X)`` only scores ``X`` as the
        calibration set, nothing is split or refitted. Like scikit-learn's
        ``cv="prefit"``: the examples given to ``fit`` must not be those the detector was
        fitted on.

    Attributes
    ----------
    detector_ : estimator
        The fitted copy.
    calibration_scores_ : ndarray of shape (n_cal,)
        Scores of the calibration rows.
    """

    def __init__(
        self,
        detector: Any,
        calibration_fraction: float = 0.5,
        random_state: int | None = None,
        prefit: bool = False,
    ) -> None:
        self.detector = detector
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state
        self.prefit = prefit

    def fit(self, X: Any, y: None = None) -> ConformalDetector:
        """Fit the detector on one part of ``X`` and score the other (calibration) part.

        Parameters
        ----------
        X : array-like of shape (n_examples, ...)
            Normal examples: rows of a table, or images.
        y : ignored

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If ``calibration_fraction`` is not in (0, 1), ``X`` is not a finite numeric
            array, or either part would be empty.
        """
        X = check_array(X, allow_nd=True, ensure_2d=False, dtype="numeric", ensure_min_samples=2)
        if self.prefit:
            if X.ndim < 2:
                raise ValueError(f"X must have one example per row, got shape {X.shape}")
            self.detector_ = self.detector
            self.calibration_scores_ = check_scores(
                self.detector_.decision_function(X), "calibration scores"
            )
            self.n_features_in_ = X.shape[1]
            return self
        if not 0.0 < float(self.calibration_fraction) < 1.0:
            raise ValueError(
                f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}"
            )
        if X.ndim < 2:
            raise ValueError(f"X must have one example per row (2-D or more), got shape {X.shape}")
        n_cal = int(round(self.calibration_fraction * len(X)))
        if n_cal < 1 or n_cal >= len(X):
            raise ValueError(
                f"{len(X)} examples with calibration_fraction={self.calibration_fraction} "
                f"leave {n_cal} calibration and {len(X) - n_cal} training examples; both must "
                "be >= 1"
            )
        perm = np.random.default_rng(self.random_state).permutation(len(X))
        cal, train = perm[:n_cal], perm[n_cal:]
        self.detector_ = _copy_estimator(self.detector)
        self.detector_.fit(X[train])
        self.calibration_scores_ = check_scores(
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
        check_is_fitted(self, "calibration_scores_")


def _copy_estimator(estimator):
    """An unfitted copy: ``sklearn.base.clone`` when the estimator supports it."""
    try:
        return clone(estimator)
    except (TypeError, RuntimeError):
        # Objects without get_params (not sklearn/PyOD style) are deep-copied instead.
        return copy.deepcopy(estimator)
