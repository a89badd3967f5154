"""Split-conformal p-values and Benjamini-Hochberg selection."""

from __future__ import annotations

import numpy as np
import pytest
from pyod.models.knn import KNN

from diffad.conformal import ConformalDetector, benjamini_hochberg, conformal_p_values


def _brute_p(cal: np.ndarray, s: np.ndarray) -> np.ndarray:
    return np.array([(1 + np.sum(cal >= v)) / (len(cal) + 1) for v in s])


def _brute_bh(p: np.ndarray, q: float) -> np.ndarray:
    """Oracle straight from the definition: reject p_i <= p_(k*), k* the largest passing i."""
    m = len(p)
    ps = sorted(p)
    k_star = 0
    for i in range(1, m + 1):
        if ps[i - 1] <= q * i / m:
            k_star = i
    if k_star == 0:
        return np.zeros(m, dtype=bool)
    return p <= ps[k_star - 1]


def test_p_values_match_definition_with_ties():
    rng = np.random.default_rng(0)
    cal = rng.integers(0, 10, size=57).astype(float)  # many ties
    s = rng.integers(-2, 12, size=300).astype(float)
    np.testing.assert_array_equal(conformal_p_values(cal, s), _brute_p(cal, s))
    p = conformal_p_values(cal, np.array([-1e9, 1e9]))
    assert p[0] == 1.0 and p[1] == pytest.approx(1 / 58)


def test_super_uniform_exact_under_exchangeability():
    # n_cal = 19: for continuous scores p is uniform on {1/20, ..., 20/20}, so
    # P(p <= k/20) = k/20 exactly. 40 000 exchangeable draws, 4.5-sigma binomial band.
    rng = np.random.default_rng(1)
    reps, n_cal = 40_000, 19
    draws = rng.standard_normal((reps, n_cal + 1))
    cal, test = draws[:, :n_cal], draws[:, n_cal]
    p_all = np.array([conformal_p_values(c, [t])[0] for c, t in zip(cal, test, strict=True)])
    for k in (1, 2, 5, 10, 19):
        a = k / (n_cal + 1)
        rate = np.mean(p_all <= a)
        band = 4.5 * np.sqrt(a * (1 - a) / reps)
        assert abs(rate - a) < band, (a, rate)
    # Between grid points the probability stays at the grid value below a (conservative).
    assert np.mean(p_all <= 0.074) < 0.05 + 4.5 * np.sqrt(0.05 * 0.95 / reps)


def test_super_uniform_with_discrete_scores():
    rng = np.random.default_rng(2)
    reps, n_cal = 20_000, 30
    draws = rng.integers(0, 4, size=(reps, n_cal + 1)).astype(float)  # heavy ties
    p = (1 + (draws[:, :n_cal] >= draws[:, [n_cal]]).sum(axis=1)) / (n_cal + 1)
    np.testing.assert_array_equal(p[:50], [_brute_p(d[:n_cal], d[n_cal:])[0] for d in draws[:50]])
    for a in (0.05, 0.1, 0.3, 0.5):
        assert np.mean(p <= a) <= a + 4.5 * np.sqrt(a * (1 - a) / reps)


@pytest.mark.parametrize("q", [0.05, 0.1, 0.3])
def test_bh_matches_oracle(q):
    rng = np.random.default_rng(3)
    for trial in range(300):
        m = int(rng.integers(1, 60))
        if trial % 3 == 0:
            p = rng.integers(1, 21, size=m) / 20.0  # ties, as conformal p-values have
        else:
            p = np.concatenate([rng.uniform(size=m // 2), rng.uniform(0, 0.01, size=m - m // 2)])
        np.testing.assert_array_equal(benjamini_hochberg(p, q), _brute_bh(p, q))


def test_bh_known_example():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    # Thresholds 0.05 i / 10: p_(5)=0.042 > 0.025 but p_(2)=0.008 <= 0.01 -> 2 rejections.
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    # At q = 0.5 every p_(i) <= 0.05 i passes up to i = 10 (0.216 <= 0.5).
    assert benjamini_hochberg(p, 0.5).all()


def test_fdr_controlled_by_simulation():
    # Conformal p-values share the calibration set (PRDS); BH still controls FDR <= q.
    rng = np.random.default_rng(4)
    reps, n_cal, m0, m1, q = 600, 200, 180, 20, 0.1
    fdp = np.empty(reps)
    power = np.empty(reps)
    for r in range(reps):
        cal = rng.standard_normal(n_cal)
        test = np.concatenate([rng.standard_normal(m0), rng.normal(3.0, 1.0, m1)])
        sel = benjamini_hochberg(conformal_p_values(cal, test), q)
        fdp[r] = sel[:m0].sum() / max(sel.sum(), 1)
        power[r] = sel[m0:].mean()
    se = fdp.std(ddof=1) / np.sqrt(reps)
    assert fdp.mean() <= q + 3 * se
    assert power.mean() > 0.3  # the test is not vacuous


def test_conformal_detector_with_pyod_knn():
    rng = np.random.default_rng(5)
    X_train = rng.standard_normal((400, 4))
    X_test = np.vstack([rng.standard_normal((100, 4)), rng.normal(6.0, 1.0, (10, 4))])
    base = KNN()
    det = ConformalDetector(base, calibration_fraction=0.5, random_state=0).fit(X_train)
    assert not hasattr(base, "decision_scores_")  # the wrapped detector is cloned, not fitted
    assert det.calibration_scores_.shape == (200,)
    p = det.p_values(X_test)
    assert p.shape == (110,) and (p > 0).all() and (p <= 1).all()
    assert (p[100:] == 1 / 201).all()  # far anomalies beat every calibration score
    selected = det.select(X_test, q=0.1)
    assert selected[100:].all() and selected[:100].sum() <= 10
    # Seeded: the same split, the same p-values.
    again = ConformalDetector(KNN(), 0.5, random_state=0).fit(X_train).p_values(X_test)
    np.testing.assert_array_equal(p, again)


class _NaNDetector:
    def fit(self, X, y=None):
        return self

    def decision_function(self, X):
        return np.full(len(X), np.nan)


def test_errors():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((20, 2))
    with pytest.raises(ValueError, match="empty"):
        conformal_p_values([], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        conformal_p_values([0.1, np.nan], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        conformal_p_values([0.1, 0.2], [np.nan])
    with pytest.raises(ValueError, match="NaN"):
        ConformalDetector(_NaNDetector(), random_state=0).fit(X)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="calibration_fraction"):
            ConformalDetector(KNN(), calibration_fraction=bad).fit(X)
    with pytest.raises(ValueError, match="calibration"):
        ConformalDetector(KNN(), calibration_fraction=0.01).fit(X)  # rounds to 0 rows
    with pytest.raises(ValueError, match="not fitted"):
        ConformalDetector(KNN()).p_values(X)
    with pytest.raises(ValueError, match="2-D"):
        ConformalDetector(KNN()).fit(X[:, 0])
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ConformalDetector(KNN()).fit(X_nan)
    for q in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="q must"):
            benjamini_hochberg([0.1, 0.2], q)
    with pytest.raises(ValueError, match="empty"):
        benjamini_hochberg([], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        benjamini_hochberg([0.1, np.nan], 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.1, 1.2], 0.1)
