"""Helpers shared by the tabular benchmark scripts: the semi-paper split and machine info."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from diffad.provenance import machine_info, write_json  # noqa: F401  (re-exported for the scripts)

DATA_DIR = Path(os.environ.get("DIFFAD_ADBENCH", "/work/shared/data/adbench/Classical"))


def semi_paper_split(
    X: np.ndarray, y: np.ndarray, seed: int, min_rows: int = 1000, max_rows: int = 50_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The published one-class split: oversample sets under ``min_rows`` with replacement to
    ``min_rows`` (before the split), subsample sets over ``max_rows``, train on the first 50 %
    of the normal rows in that order, test on the other normals plus all anomalies.

    Returns ``(X_train, X_test, y_test)``; NaN is replaced by the training column mean.
    """
    rng = np.random.RandomState(seed)
    if X.shape[0] < min_rows:
        idx = rng.choice(X.shape[0], min_rows, replace=True)
        X, y = X[idx], y[idx]
    elif X.shape[0] > max_rows:
        idx = rng.choice(X.shape[0], max_rows, replace=False)
        X, y = X[idx], y[idx]
    normal = np.flatnonzero(y == 0)
    n_train = round(len(normal) / 2)
    train = normal[:n_train]
    test = np.concatenate([normal[n_train:], np.flatnonzero(y == 1)])
    X_train, X_test = X[train].astype(np.float64), X[test].astype(np.float64)
    col_mean = np.nanmean(X_train, axis=0)
    col_mean = np.where(np.isfinite(col_mean), col_mean, 0.0)
    for part in (X_train, X_test):
        rows, cols = np.nonzero(np.isnan(part))
        part[rows, cols] = col_mean[cols]
    return X_train, X_test, y[test]


def load_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load ``DATA_DIR/<name>.npz`` (``name`` like ``6_cardio``)."""
    with np.load(DATA_DIR / f"{name}.npz", allow_pickle=False) as data:
        return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).astype(int).ravel()


class Timer:
    """Context manager measuring wall and process-CPU seconds."""

    def __enter__(self) -> Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
