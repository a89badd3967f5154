"""Shared machinery of the tabular detectors: validation, standardisation, checkpoints.

Every detector in :mod:`diffad.tabular` subclasses :class:`TabularDetector`, itself a
:class:`pyod.models.base.BaseDetector`, so ``predict``, ``predict_proba`` and
``predict_confidence`` come from PyOD and behave exactly as for PyOD's own detectors.
Input is validated by :func:`sklearn.utils.validation.validate_data` (finite numeric 2-D
arrays; sparse, complex and object input are refused with scikit-learn's messages), and
methods of an unfitted detector raise :class:`sklearn.exceptions.NotFittedError`.

Constant columns
----------------
A column that is constant on the training rows is **kept** with scale 1 (the
``StandardScaler`` convention): it becomes 0 on every training row, and a test row that
differs in that column is moved away from all training rows by its raw difference. Dropping
such columns would hide exactly the anomalies that break a constant; scaling by 0 would divide
by zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pyod.models.base import BaseDetector
from sklearn.utils.validation import check_is_fitted, validate_data

from diffad.checkpoint import load_checkpoint, save_checkpoint


class TabularDetector(BaseDetector):
    """Base class: validation, standardisation, PyOD bookkeeping and checkpoints.

    Subclasses implement ``_fit_standardised(Z)`` (returns training scores) and
    ``_score_standardised(Z)`` and list the attributes to persist in ``_state_tensors`` /
    ``_load_state``.

    Parameters
    ----------
    contamination : float
        Expected share of anomalies in the training data, used only for ``threshold_`` and
        ``labels_`` (PyOD convention), in (0, 0.5]; checked by ``fit``.
    """

    #: Fewest training rows a detector accepts (subclasses may raise it).
    _min_train_rows: ClassVar[int] = 2

    def __init__(self, contamination: float = 0.1) -> None:
        # Not BaseDetector.__init__: it validates, and scikit-learn estimators only store
        # their parameters in __init__ (validation happens in fit).
        self.contamination = contamination

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> TabularDetector:
        """Fit the detector on (mostly) normal rows.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Training data; finite values only.
        y : ignored
            Present for API consistency (PyOD / scikit-learn); labels are never used.

        Returns
        -------
        self
        """
        self._check_contamination()
        X = validate_data(
            self, X, dtype=np.float64, ensure_min_samples=self._min_train_rows_for(), reset=True
        )
        self._check_params(X)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        # Constant columns keep scale 1 (see the module docstring).
        scale[scale == 0] = 1.0
        self.scaler_mean_ = mean
        self.scaler_scale_ = scale
        self.n_features_in_ = X.shape[1]
        scores = self._fit_standardised(self._standardise(X))
        self.decision_scores_ = np.asarray(scores, dtype=np.float64).ravel()
        # Always two classes (normal, anomaly) for predict_proba; PyOD would infer one class
        # from an all-zero ``y``, which breaks predict_proba.
        self._classes = 2
        self._process_decision_scores()
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores of new rows (higher = more anomalous).

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Rows to score; finite, with as many columns as the training data.

        Returns
        -------
        numpy.ndarray of shape (n_rows,)
        """
        self._check_is_fitted()
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(self._score_standardised(self._standardise(X)), dtype=np.float64)

    def _check_is_fitted(self) -> None:
        """Raise :class:`sklearn.exceptions.NotFittedError` before ``fit``."""
        check_is_fitted(self, "decision_scores_")

    def _check_contamination(self) -> None:
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, int | float) or not 0.0 < c <= 0.5:
            raise ValueError(f"contamination must be a number in (0, 0.5], got {c!r}")

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return (X - self.scaler_mean_) / self.scaler_scale_

    def _min_train_rows_for(self) -> int:
        return self._min_train_rows

    def _check_params(self, X: np.ndarray) -> None:
        """Validate constructor parameters against the data (override to extend)."""

    # -------------------------------------------------------------- subclasses
    def _fit_standardised(self, Z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_standardised(self, Z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_tensors(self) -> dict[str, torch.Tensor | np.ndarray]:
        """Fitted arrays of the subclass to store (besides scaler and training scores)."""
        return {}

    def _load_state(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Rebuild subclass state from a checkpoint."""

    # ------------------------------------------------------------- checkpoints
    def save(self, path: str | Path) -> Path:
        """Save the fitted detector as a folder (``config.json`` + ``weights.safetensors``).

        Parameters
        ----------
        path : str or Path
            Folder to write.

        Returns
        -------
        Path
            The folder written.
        """
        self._check_is_fitted()
        params = self.get_params(deep=False)
        config = {
            "params": params,
            "n_features_in": int(self.n_features_in_),
            "threshold": float(self.threshold_),
            "mu": float(self._mu),
            "sigma": float(self._sigma),
        }
        tensors: dict[str, torch.Tensor | np.ndarray] = {
            "scaler_mean": self.scaler_mean_,
            "scaler_scale": self.scaler_scale_,
            "decision_scores": self.decision_scores_,
            "labels": self.labels_.astype(np.int64),
        }
        for name, value in self._state_tensors().items():
            tensors[f"state.{name}"] = value
        return save_checkpoint(path, type(self).__name__, config, tensors)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> TabularDetector:
        """Load a detector saved by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            Checkpoint folder.
        device : str, optional
            Override the stored ``device`` parameter (e.g. ``"cpu"``).

        Returns
        -------
        TabularDetector
            A fitted instance of ``cls``.

        Raises
        ------
        ValueError
            If the folder is not a checkpoint or was written by another class.
        """
        config, tensors = load_checkpoint(path, cls.__name__)
        params = dict(config["params"])
        if device is not None and "device" in params:
            params["device"] = device
        obj = cls(**params)
        obj.n_features_in_ = int(config["n_features_in"])
        obj.scaler_mean_ = tensors["scaler_mean"].numpy().astype(np.float64)
        obj.scaler_scale_ = tensors["scaler_scale"].numpy().astype(np.float64)
        obj.decision_scores_ = tensors["decision_scores"].numpy().astype(np.float64)
        obj.labels_ = tensors["labels"].numpy().astype(int)
        obj.threshold_ = float(config["threshold"])
        obj._mu = float(config["mu"])
        obj._sigma = float(config["sigma"])
        obj._classes = 2
        state = {k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")}
        obj._load_state(config, state)
        return obj
