"""Selective p-values for DISYRE regions: exact pieces and a dense-grid oracle.

The oracle recomputes the DISYRE map along the test line by direct float64 forward passes of
the restorer and scipy's uniform filter, independently of the tracer.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.disyre_localizer import DisyreLocalizer
from diffad.image.region_maps import mean_abs_error, restoration_map
from diffad.selective.dal import SelectiveTest
from diffad.selective.region_tracer import region_tracer
from diffad.selective.truncnorm import truncated_p_value

D = 8
FG = 0.05


def _localizer(inference: str = "ensemble", severities=(99, 74, 49, 24)) -> DisyreLocalizer:
    torch.manual_seed(3)
    loc = DisyreLocalizer(severities=severities, inference=inference, foreground_threshold=FG)
    net = UNet(UNetConfig(channels=[4, 8], activation="leaky_relu"))
    # Random running statistics, so that BatchNorm folding is exercised.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    loc.model_ = net.eval()
    loc.image_shape_ = (1, D, D)
    loc.foreground_ = np.zeros((D, D), dtype=bool)
    loc.foreground_[1:-1, 1:-1] = True  # the region test's fixed mask
    return loc


@pytest.fixture(scope="module", params=["ensemble", "sampler"])
def loc(request):
    return _localizer(request.param)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(11)
    x = np.zeros((D, D))
    x[1:-1, 1:-1] = 0.5 + 0.3 * rng.standard_normal((D - 2, D - 2))
    x[3:5, 3:5] += 1.5  # a bright "lesion"
    return x, np.full((D, D), 0.5)


def _direct_restorations(loc: DisyreLocalizer, imgs: torch.Tensor) -> list[torch.Tensor]:
    """R_k(X) by direct float64 forward passes of x + f(x, t) along each chain."""
    net = copy.deepcopy(loc.model_).double()
    outs = []
    with torch.no_grad():
        for chain in loc.chains():
            x = imgs.clone()
            for step in chain.steps:
                x = step.c_x * x + step.c_eps * net(x, step.t)
            outs.append(x)
    return outs


def _direct_map(loc: DisyreLocalizer, imgs: torch.Tensor, fg=None) -> np.ndarray:
    """The region-test map (fixed mask ``loc.foreground_``, or a per-image ``fg``)."""
    x = imgs.numpy()
    rest = [r.numpy() for r in _direct_restorations(loc, imgs)]
    fg = loc.foreground_[None, None] if fg is None else fg
    w = fg * fg.mean(axis=(1, 2, 3), keepdims=True) / len(rest)
    e = w * sum(np.abs(r - x) for r in rest)
    return uniform_filter(e, size=(1, 1, 3, 3), mode="constant").reshape(len(x), -1)


def _direct_map_unfiltered(loc, imgs, fg) -> np.ndarray:
    x = imgs.numpy()
    rest = [r.numpy() for r in _direct_restorations(loc, imgs)]
    w = fg * fg.mean(axis=(1, 2, 3), keepdims=True) / len(rest)
    return (w * sum(np.abs(r - x) for r in rest)).reshape(len(x), -1)


def test_traced_pieces_equal_direct_float64_forward(loc, pair):
    tracer = region_tracer(loc.region_map_definition(), (1, D, D), 3, "cpu")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(D * D), rng.standard_normal(D * D)
    z = np.array([-1.0, 0.0, 0.7])
    lo, hi, dv, ds = tracer.differences(a, b, z)
    # A point inside each piece, away from the traced one.
    inner = np.where(np.isfinite(hi), z + 0.5 * (hi - z), z + 0.1)
    imgs = torch.from_numpy((a[None] + inner[:, None] * b[None]).reshape(-1, 1, D, D))
    direct = _direct_restorations(loc, imgs)
    for k, r in enumerate(direct):
        want = (r - imgs).reshape(len(z), -1).numpy()
        got = dv[:, k] + ds[:, k] * (inner - z)[:, None]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert np.all(lo < z) and np.all(z < hi)


def test_selection_map_matches_direct_and_the_localizer(loc, pair):
    tracer = region_tracer(loc.region_map_definition(), (1, D, D), 3, "cpu")
    x = torch.from_numpy(pair[0][None, None])
    np.testing.assert_allclose(tracer.selection_map(x.numpy()), _direct_map(loc, x), atol=1e-12)
    x32 = x.numpy().astype(np.float32)
    _, maps = loc._analyse(x32)
    region = restoration_map(mean_abs_error(x32, loc.restore(x32)), loc.foreground_, 3)
    np.testing.assert_allclose(region.reshape(1, -1), _direct_map(loc, x), atol=1e-5)
    # The localiser's own maps use each image's foreground, unfiltered.
    fg = pair[0] > FG
    assert np.all(maps[0][~fg] == 0)
    per_image = _direct_map_unfiltered(loc, x, fg[None, None])
    np.testing.assert_allclose(maps.reshape(1, -1), per_image, atol=1e-5)


def test_parametric_matches_dense_grid_oracle(loc, pair):
    x, ref = pair
    lam = float(np.quantile(_direct_map(loc, torch.from_numpy(x[None, None])), 0.8))
    st = SelectiveTest(loc, 0.05, lam=lam, device="cpu", z_max=6.0, termination="exhaustive")
    res = st.test(x, ref)
    assert res.region_size > 0
    a, b, z_obs, region = st.conditioning_line(x, ref)
    grid = np.linspace(-6.0, 6.0, 24001)
    imgs = torch.from_numpy((a[None] + grid[:, None] * b[None]).reshape(-1, 1, D, D))
    m_grid = _direct_map(loc, imgs) > lam
    inside = (m_grid == region.reshape(-1)).all(axis=1)
    ivs = res.intervals
    found = ((grid[:, None] >= ivs[:, 0]) & (grid[:, None] <= ivs[:, 1])).any(axis=1)
    mismatch = grid[found != inside]
    assert all(np.min(np.abs(ivs.reshape(-1) - z)) < 1e-6 for z in mismatch)
    assert inside.sum() > 10  # the observed point's neighbourhood at least
    h = grid[1] - grid[0]
    cells = np.column_stack([grid[inside] - h / 2, grid[inside] + h / 2])
    from diffad.selective.intervals import merge_intervals

    p_grid = truncated_p_value(res.z, merge_intervals(cells))
    assert res.p_value == pytest.approx(p_grid, abs=5e-3)


def test_oc_interval_contains_the_observation_inside_the_truncation_set(loc, pair):
    x, ref = pair
    lam = float(np.quantile(_direct_map(loc, torch.from_numpy(x[None, None])), 0.8))
    st = SelectiveTest(loc, 0.05, lam=lam, device="cpu", z_max=6.0, termination="exhaustive")
    oc = st.test(x, ref, method="oc")
    full = st.test(x, ref)
    lo, hi = oc.intervals[0]
    assert lo < oc.z < hi
    # The OC interval lies inside one interval of the full truncation set.
    assert any(a <= lo + 1e-9 and hi <= b + 1e-9 for a, b in full.intervals)


@pytest.mark.slow
def test_null_validity_smoke():
    """100 seeded null pairs: DISYRE parametric p-values uniform, rejection near α (opt-in)."""
    from scipy.stats import kstest

    loc = _localizer()
    loc.foreground_ = np.ones((D, D), dtype=bool)
    rng = np.random.default_rng(5)
    probe = 0.5 + 0.1 * rng.standard_normal((50, 1, D, D))
    lam = float(np.quantile(_direct_map(loc, torch.from_numpy(probe)), 0.97))
    st = SelectiveTest(loc, 0.01, lam=lam, device="cpu")
    ps = []
    for _ in range(100):
        x, r = 0.5 + 0.1 * rng.standard_normal((2, D, D))
        res = st.test(x, r)
        if res.selected:
            ps.append(res.p_value)
    assert len(ps) >= 50
    assert kstest(ps, "uniform").pvalue > 1e-3
    assert np.mean(np.array(ps) <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(ps))
