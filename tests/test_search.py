"""parametric_search on synthetic piece sequences with a known truncation set."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

from diffad.selective.search import (
    log_masses,
    merge_intervals,
    p_bounds,
    parametric_search,
    precision_limits,
)
from diffad.selective.truncnorm import truncated_p_value


def grid_evaluator(width: float, accept, seen: list | None = None):
    """Pieces [k·w, (k+1)·w]; a piece belongs to the truncation set when ``accept(k)``."""

    def evaluate(zs: np.ndarray) -> list:
        out = []
        for z in zs:
            if seen is not None:
                seen.append(float(z))
            k = int(np.floor(z / width))
            lo, hi = k * width, (k + 1) * width
            out.append((lo, hi, [(lo, hi)] if accept(k) else []))
        return out

    return evaluate


def exact_set(width: float, accept, z_lim: float = 40.0) -> np.ndarray:
    ks = np.arange(int(-z_lim / width), int(z_lim / width))
    return np.array([(k * width, (k + 1) * width) for k in ks if accept(k)])


def accept_most(k: int) -> bool:
    return (k * 7919) % 5 != 0  # a fixed, irregular 80 % of the pieces


@pytest.mark.parametrize("z_obs", [0.013, 1.87, -2.9])
@pytest.mark.parametrize(("batch", "spacing"), [(1, 1.0), (8, 1.0), (8, 3.0), (16, 3.0)])
def test_precision_bracket_contains_the_exact_p(z_obs, batch, spacing):
    width = 0.037
    exact = truncated_p_value(z_obs, exact_set(width, accept_most))
    res = parametric_search(
        grid_evaluator(width, accept_most),
        z_obs,
        batch_size=batch,
        spacing=spacing,
        termination="precision",
        precision=1e-3,
    )
    assert res.p_bounds[1] - res.p_bounds[0] <= 1e-3
    assert res.p_bounds[0] - 1e-12 <= exact <= res.p_bounds[1] + 1e-12
    assert abs(res.p_value - exact) <= 1e-3


@pytest.mark.parametrize("spacing", [1.0, 3.0])
def test_exhaustive_is_exact(spacing):
    width, z_obs = 0.05, 0.41
    res = parametric_search(
        grid_evaluator(width, accept_most),
        z_obs,
        batch_size=8,
        spacing=spacing,
        termination="exhaustive",
    )
    exact = truncated_p_value(z_obs, exact_set(width, accept_most))
    assert res.p_value == pytest.approx(exact, rel=1e-10)


def test_precision_stop_places_no_point_in_negligible_tails():
    # Wide pieces: without the cap one round of 8 points at spacing 3 reaches z = ±12.
    seen: list[float] = []
    res = parametric_search(
        grid_evaluator(0.5, lambda k: True, seen),
        0.2,
        batch_size=8,
        spacing=3.0,
        termination="precision",
        precision=1e-3,
    )
    assert res.p_bounds[1] - res.p_bounds[0] <= 1e-3
    # The first round sees the known mass of one piece (≥ 0.19); later rounds more.
    reach = -ndtri(1e-3 / 4 * 0.19)
    assert max(abs(z) for z in seen) <= reach


@pytest.mark.parametrize("alternative", ["two-sided", "abs"])
@pytest.mark.parametrize("seed", range(20))
def testprecision_limits_keep_the_bracket_within_precision(alternative, seed):
    # A known truncation set on both sides of z_obs, explored up to the limits.
    rng = np.random.default_rng(seed)
    z_obs = rng.uniform(-3.0, 3.0)
    lo = z_obs - rng.exponential(0.5, 2)
    hi = z_obs + rng.exponential(0.5, 2)
    known = merge_intervals([[lo[0], lo[0] + 0.3 * (z_obs - lo[0])], [lo[1], hi[0]]])
    la, lb = log_masses(known, z_obs, alternative)
    for precision in (1e-3, 1e-2):
        right, left = precision_limits(la, lb, precision, alternative)
        # The explored range must contain the known set; the limits may lie inside it.
        right = max(right, known[-1, 1], z_obs)
        left = min(left, known[0, 0], z_obs)
        _, (p_lo, p_hi) = p_bounds(la, lb, z_obs, left, right, alternative)
        assert p_hi - p_lo <= precision * (1 + 1e-9)


def test_precision_stop_hardly_explores_the_side_that_cannot_move_a_small_p():
    # z_obs deep in the left part of an all-accepting set: p is small, the mass below z_obs
    # is tiny, so the right tail (which only adds to the mass above) barely matters.
    seen: list[float] = []
    z_obs = -2.5
    res = parametric_search(
        grid_evaluator(0.05, lambda k: True, seen),
        z_obs,
        batch_size=8,
        spacing=1.0,
        termination="precision",
        precision=1e-3,
    )
    exact = truncated_p_value(z_obs, exact_set(0.05, lambda k: True))
    assert res.p_bounds[1] - res.p_bounds[0] <= 1e-3
    assert abs(res.p_value - exact) <= 1e-3
    # A ≈ Φ(−2.5) = 0.0062 and B ≈ 1, so a right tail of mass up to 1e-3/(4·0.0062) = 0.04
    # (z ≈ 1.75) cannot matter; the left tail must fall below 1e-3/4 (z ≈ −3.48). A rule
    # with the same mass on both sides would explore the right side to z ≈ 3.48 too.
    assert max(seen) < 1.8
    assert min(seen) < -3.4


def test_bad_spacing_is_rejected():
    with pytest.raises(ValueError, match="spacing"):
        parametric_search(grid_evaluator(0.1, accept_most), 0.0, spacing=0.0)


@pytest.mark.parametrize("batch", [0, 2.5, True])
def test_bad_batch_size_is_rejected(batch):
    with pytest.raises(ValueError, match="batch_size"):
        parametric_search(grid_evaluator(0.1, accept_most), 0.0, batch_size=batch)
