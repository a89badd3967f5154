"""Log-space truncated normal against mpmath (deep tails) and scipy."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from scipy import stats

from diffad.selective.truncnorm import (
    log1mexp,
    log_interval_mass,
    naive_p_value,
    truncated_p_value,
)

mpmath.mp.dps = 400


def _mass(lo: float, hi: float):
    return mpmath.ncdf(mpmath.mpf(hi)) - mpmath.ncdf(mpmath.mpf(lo))


def _reference_p(z: float, intervals) -> float:
    total = sum(_mass(lo, hi) for lo, hi in intervals)
    below = sum(_mass(lo, min(hi, z)) for lo, hi in intervals if min(hi, z) > lo)
    f = below / total
    return float(2 * min(f, 1 - f))


@pytest.mark.parametrize("z", [8.0, -8.0, 20.0, -20.0, 37.0, -37.0])
def test_p_value_deep_tails_match_mpmath(z):
    a = abs(z)
    intervals = [[-np.inf, -a - 3], [-1.0, 2.0], [a - 0.5, a + 1.0], [-a - 1.0, -a + 0.2]]
    p = truncated_p_value(z, intervals)
    ref = _reference_p(z, intervals)
    assert p > 0
    assert p == pytest.approx(ref, rel=1e-11)


@pytest.mark.parametrize("z", [8.0, 20.0, 37.0])
def test_single_far_interval_is_not_one_minus_f(z):
    # Both ends far in the upper tail: 1 - F formed naively would be 0 or garbage.
    intervals = [[z - 0.1, z + 0.3]]
    p = truncated_p_value(z, intervals)
    ref = _reference_p(z, intervals)
    assert p == pytest.approx(ref, rel=1e-11)


def test_interval_masses_against_scipy_and_mpmath():
    lo = np.array([-np.inf, -1.0, 3.0, -40.0, -1e-10, 30.0])
    hi = np.array([np.inf, 0.5, np.inf, -38.0, 1e-10, 30.5])
    got = np.exp(log_interval_mass(lo, hi))
    for g, a, b in zip(got, lo, hi, strict=True):
        assert g == pytest.approx(float(_mass(a, b)), rel=1e-12)
    assert got[1] == pytest.approx(stats.norm.cdf(0.5) - stats.norm.cdf(-1.0), rel=1e-14)
    assert np.exp(log_interval_mass(1.0, 1.0)) == 0.0


def test_moderate_values_match_scipy_truncnorm():
    for z, lo, hi in [(0.3, -1.0, 2.0), (1.9, 0.5, 4.0), (-2.5, -3.0, -0.1)]:
        f = stats.truncnorm.cdf(z, lo, hi)
        assert truncated_p_value(z, [[lo, hi]]) == pytest.approx(2 * min(f, 1 - f), rel=1e-10)
        assert truncated_p_value(z, [[lo, hi]], "greater") == pytest.approx(1 - f, rel=1e-9)
        assert truncated_p_value(z, [[lo, hi]], "less") == pytest.approx(f, rel=1e-9)


def test_untruncated_equals_naive_and_abs_on_symmetric_set():
    for z in (-3.0, 0.2, 5.0, 12.0):
        full = [[-np.inf, np.inf]]
        assert truncated_p_value(z, full) == pytest.approx(naive_p_value(z), rel=1e-12)
        sym = [[-np.inf, -2.0], [-1.0, 1.0], [2.0, np.inf]]
        if abs(z) > 2 or abs(z) < 1:
            assert truncated_p_value(z, sym, "abs") == pytest.approx(
                truncated_p_value(z, sym), rel=1e-10
            )
    assert naive_p_value(40.0) == pytest.approx(2 * float(mpmath.ncdf(-40)), rel=1e-12)


def test_log1mexp_accuracy():
    x = np.array([-1e-12, -0.1, -1.0, -50.0])
    ref = [float(mpmath.log(1 - mpmath.exp(mpmath.mpf(v)))) for v in x]
    np.testing.assert_allclose(log1mexp(x), ref, rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="zero probability"):
        truncated_p_value(0.0, [[1.0, 1.0]])
    with pytest.raises(ValueError, match="lo <= hi"):
        truncated_p_value(0.0, [[1.0, 0.0]])
    with pytest.raises(ValueError, match="finite"):
        truncated_p_value(float("nan"), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="alternative"):
        truncated_p_value(0.5, [[0.0, 1.0]], "both")
