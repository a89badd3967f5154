"""DTE-NP against brute-force and PyOD oracles."""

from __future__ import annotations

import numpy as np
import pytest
from pyod.models.knn import KNN

from diffad.tabular import DTENonParametric


def brute_force(train: np.ndarray, query: np.ndarray, k: int, exclude_self: bool) -> np.ndarray:
    """Mean of the k smallest squared distances, by explicit differences (no GEMM trick)."""
    d2 = ((query[:, None, :] - train[None, :, :]) ** 2).sum(axis=2)
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sort(d2, axis=1)[:, :k].mean(axis=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 6)) * np.array([1, 2, 3, 0.5, 10, 1]) + 4
    X_test = rng.normal(size=(60, 6)) * 3
    return X, X_test


def standardise(X, ref):
    return (X - ref.mean(0)) / ref.std(0)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
@pytest.mark.parametrize("k", [1, 5])
def test_matches_brute_force_oracle(data, chunk_size, k):
    X, X_test = data
    Z, Zt = standardise(X, X), standardise(X_test, X)
    det = DTENonParametric(k=k, chunk_size=chunk_size, output="distance", device="cpu").fit(X)
    np.testing.assert_allclose(
        det.decision_function(X_test), brute_force(Z, Zt, k, False), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(
        det.decision_scores_, brute_force(Z, Z, k, True), rtol=1e-10, atol=1e-10
    )


def test_mode_is_distance_over_d(data):
    X, X_test = data
    mode = DTENonParametric(output="mode").fit(X)
    dist = DTENonParametric(output="distance").fit(X)
    np.testing.assert_allclose(mode.decision_function(X_test) * 6, dist.decision_function(X_test))
    np.testing.assert_allclose(mode.mean_sq_distance(X_test), dist.decision_function(X_test))
    np.testing.assert_allclose(mode.decision_scores_ * 6, dist.decision_scores_)


def test_agrees_with_pyod_knn_mean_sqeuclidean(data):
    X, X_test = data
    Z, Zt = standardise(X, X), standardise(X_test, X)
    knn = KNN(n_neighbors=5, method="mean", metric="sqeuclidean").fit(Z)
    det = DTENonParametric(k=5, output="distance").fit(X)
    np.testing.assert_allclose(det.decision_function(X_test), knn.decision_function(Zt), rtol=1e-8)
    # Training scores leave the row itself out, exactly as PyOD's KNN does.
    np.testing.assert_allclose(det.decision_scores_, knn.decision_scores_, rtol=1e-8, atol=1e-12)


def test_duplicated_training_rows_count_as_neighbours():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    det = DTENonParametric(k=1, output="distance").fit(X)
    # Row 0 has an exact copy (row 1): its leave-self-out distance is 0, not its own 0.
    assert det.decision_scores_[0] == 0.0 and det.decision_scores_[1] == 0.0
    assert np.all(det.decision_scores_[2:] > 0)


def test_fewer_rows_than_k_plus_one_rejected():
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="minimum of 6"):
        DTENonParametric(k=5).fit(X)
    DTENonParametric(k=4).fit(X)


@pytest.mark.parametrize("bad", [{"k": 0}, {"k": 2.5}, {"output": "median"}, {"chunk_size": 0}])
def test_bad_parameters_rejected(data, bad):
    with pytest.raises(ValueError):
        DTENonParametric(**bad).fit(data[0])
