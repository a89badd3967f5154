"""SelectiveTest: parametric p-values against a dense-grid oracle, OC, comparators, errors."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import norm

from diffad.diffusion.chain import ddim_timesteps, draw_reconstruction_noise, reconstruct
from diffad.diffusion.schedules import NoiseSchedule
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.selective.dal import NO_REGION, SelectiveTest
from diffad.selective.intervals import merge_intervals
from diffad.selective.truncnorm import truncated_p_value

pytestmark = pytest.mark.usefixtures("torch_threads")

D = 8
LAM = 0.5


@pytest.fixture(scope="module")
def localizer():
    torch.manual_seed(0)
    loc = DDPMLocalizer(t_start=460, ddim_steps=5)
    loc.model_ = UNet(UNetConfig(channels=[4, 8])).eval()
    loc.noise_schedule_ = NoiseSchedule.linear(1000)
    loc.image_shape_, loc.preprocessing_ = (1, D, D), None
    return loc


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(7)
    return rng.standard_normal((D, D)), rng.standard_normal((D, D))


def _ar1(rho: float = 0.5) -> np.ndarray:
    """Σ_ij = rho^|i−j| over the row-major flattened D×D pixels."""
    idx = np.arange(D * D)
    return rho ** np.abs(idx[:, None] - idx[None, :])


def _oracle_line(x, r, region, sigma):
    """The conditioning line X(z) = a + b·z and z_obs, stated from the model: η = 1_M/|M|,
    sd = (2 ηᵀΣη)^{1/2} (image and reference both with covariance Σ), b = Ση/sd."""
    eta = region.reshape(-1) / region.sum()
    sd = np.sqrt(2.0 * eta @ sigma @ eta)
    z_obs = float(eta @ (x - r).reshape(-1)) / sd
    b = sigma @ eta / sd
    return x.reshape(-1) - z_obs * b, b, z_obs


def _oracle_membership(loc, a, b, region, grid, lam):
    """M(a + b·z) == M_obs on a dense grid, by direct float64 reconstructions (independent
    path: the published chain and the 3×3 mean filter, no tracer)."""
    m = region.reshape(-1)
    net = copy.deepcopy(loc.model_).double()
    steps = ddim_timesteps(460, 5)
    noises = draw_reconstruction_noise((1, 1, D, D), steps, 0, dtype=torch.float64)
    out = np.empty(len(grid), dtype=bool)
    for s in range(0, len(grid), 2000):
        zs = grid[s : s + 2000]
        imgs = torch.from_numpy((a[None] + zs[:, None] * b[None]).reshape(-1, 1, D, D))
        with torch.no_grad():
            rec = reconstruct(net, loc.noise_schedule_, imgs, steps, noises, 1.0)
        diff = rec - imgs
        filt = torch.nn.functional.avg_pool2d(diff, 3, stride=1, padding=1).reshape(len(zs), -1)
        out[s : s + 2000] = ((filt.abs() > lam).numpy() == m[None]).all(axis=1)
    return out


@pytest.mark.parametrize("cov", ["iid", "ar1"])
def test_parametric_matches_dense_grid_oracle(localizer, pair, cov):
    """The traced truncation set is the dense grid's, for i.i.d. noise and for AR(1) noise
    (where the line moves every pixel along Ση, not only the region). A lesioned image at
    the published λ = 0.8 makes the set end inside the grid, so that it matters."""
    lam = 0.8
    x, r = pair[0].copy(), pair[1]
    x[2:5, 2:5] += 3.0
    sigma = np.eye(D * D) if cov == "iid" else _ar1()
    st = SelectiveTest(
        localizer, 1.0 if cov == "iid" else sigma, lam=lam, device="cpu", z_max=5.0,
        termination="exhaustive",
    )  # fmt: skip
    res = st.test(x, r, method="parametric")
    assert res.region_size > 0 and res.message == ""
    a, b, z_obs = _oracle_line(x, r, res.region, sigma)
    assert res.z == pytest.approx(z_obs, rel=1e-12)
    grid = np.linspace(-5.0, 5.0, 10001)
    inside = _oracle_membership(localizer, a, b, res.region, grid, lam)
    # A set that ends inside the grid and moves the p-value far from the naive one.
    assert inside[np.argmin(np.abs(grid - z_obs))] and not inside.all()
    assert abs(res.p_value - res.naive_p_value) > 0.1
    ivs = res.intervals
    found = ((grid[:, None] >= ivs[:, 0]) & (grid[:, None] <= ivs[:, 1])).any(axis=1)
    mismatch = grid[found != inside]
    # Disagreements only where the grid straddles an interval end (float rounding at ends).
    ends = ivs.reshape(-1)
    assert all(np.min(np.abs(ends - z)) < 1e-6 for z in mismatch)
    # The oracle's p from grid cells agrees to the grid resolution.
    h = grid[1] - grid[0]
    cells = np.column_stack([grid[inside] - h / 2, grid[inside] + h / 2])
    p_grid = truncated_p_value(res.z, merge_intervals(cells))
    assert res.p_value == pytest.approx(p_grid, abs=5e-3)
    lo, hi = res.p_value_bounds
    assert lo <= res.p_value <= hi and hi - lo < 1e-6
    # The default (precision) search brackets the same p.
    default = SelectiveTest(localizer, 1.0 if cov == "iid" else sigma, lam=lam, device="cpu")
    assert abs(default.test(x, r).p_value - res.p_value) <= 1e-3


def test_batched_equals_sequential_and_oc_is_inside(localizer, pair):
    kw = {"lam": LAM, "device": "cpu", "z_max": 3.0, "termination": "exhaustive"}
    seq = SelectiveTest(localizer, 1.0, batch_size=1, **kw).test(*pair)
    bat = SelectiveTest(localizer, 1.0, batch_size=32, **kw).test(*pair)
    assert bat.p_value == pytest.approx(seq.p_value, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(bat.intervals, seq.intervals, atol=1e-8)
    oc = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu").test(*pair, method="oc")
    (lo, hi), z = oc.intervals[0], oc.z
    assert lo < z < hi
    assert any(a <= lo + 1e-9 and hi <= b + 1e-9 for a, b in seq.intervals)
    assert oc.p_value == pytest.approx(truncated_p_value(z, [[lo, hi]]))


def test_prefix_cache_skips_network_calls(localizer, pair):
    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu", z_max=3.0, termination="exhaustive")
    res = st.test(*pair)
    calls = localizer.ddim_steps
    assert res.n_pieces <= res.n_network_calls < res.n_pieces * calls


def test_early_stopping_rules(localizer, pair):
    full = SelectiveTest(
        localizer, 1.0, lam=LAM, device="cpu", z_max=5.0, termination="exhaustive"
    ).test(*pair)
    prec = SelectiveTest(
        localizer, 1.0, lam=LAM, device="cpu", termination="precision", precision=1e-3
    ).test(*pair)
    assert abs(prec.p_value - full.p_value) <= 1e-3
    # The true p lies in both brackets (the z_max = 5 run leaves tails of mass ~1e-7 unknown).
    assert prec.p_value_bounds[0] <= full.p_value_bounds[1]
    assert full.p_value_bounds[0] <= prec.p_value_bounds[1]
    assert prec.p_value_bounds[1] - prec.p_value_bounds[0] <= 1e-3
    assert prec.n_pieces <= full.n_pieces
    dec = SelectiveTest(
        localizer, 1.0, lam=LAM, device="cpu", termination="decision", alpha=0.05
    ).test(*pair)
    assert (dec.p_value_bounds[1] <= 0.05) == (full.p_value <= 0.05)


def test_comparators(localizer, pair):
    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu", n_permutations=40)
    naive = st.test(*pair, method="naive")
    assert naive.p_value == pytest.approx(2 * norm.sf(abs(naive.z)), rel=1e-12)
    bonf = st.test(*pair, method="bonferroni")
    assert bonf.p_value == pytest.approx(min(1.0, 2.0 ** (D * D) * naive.p_value))
    perm = st.test(*pair, method="permutation")
    assert perm.p_value in {(1 + k) / 41 for k in range(41)}
    assert st.test(*pair, method="permutation").p_value == perm.p_value  # seeded
    x, r = pair
    shifted = st.test(x + 3.0 * (naive.region > 0), r, method="permutation")
    assert shifted.p_value <= 2 / 41


def test_covariance_forms_agree(localizer, pair):
    n = D * D
    base = SelectiveTest(localizer, 2.0, lam=LAM, device="cpu", termination="precision")
    p0 = base.test(*pair).p_value
    for sigma in (np.full((D, D), 2.0), np.full(n, 2.0), 2.0 * np.eye(n)):
        st = SelectiveTest(localizer, sigma, lam=LAM, device="cpu", termination="precision")
        assert st.test(*pair).p_value == pytest.approx(p0, rel=1e-9)
    # A diagonal matrix with unequal variances is a different test from the scalar one.
    diag = np.diag(np.linspace(1.0, 3.0, n))
    res = SelectiveTest(localizer, diag, lam=LAM, device="cpu", termination="precision")
    per_pixel = SelectiveTest(
        localizer, np.linspace(1.0, 3.0, n).reshape(D, D), lam=LAM, device="cpu",
        termination="precision",
    )  # fmt: skip
    assert res.test(*pair).p_value == pytest.approx(per_pixel.test(*pair).p_value, rel=1e-9)


def test_conditioning_line_passes_through_the_image_along_sigma_eta(localizer, pair):
    x, r = pair
    ar1 = _ar1()
    st = SelectiveTest(localizer, ar1, lam=LAM, device="cpu")
    a, b, z_obs, region = st.conditioning_line(x, r)
    np.testing.assert_allclose(a + b * z_obs, x.reshape(-1), atol=1e-12)
    eta = region.reshape(-1) / region.sum()
    # b = Σ η / (η' 2Σ η)^{1/2}: moving z by one shifts the statistic η'(X − X′) by one sd.
    sd = np.sqrt(2.0 * eta @ ar1 @ eta)
    np.testing.assert_allclose(b, ar1 @ eta / sd, rtol=1e-12)
    assert z_obs == pytest.approx(st.test(x, r, "naive").z, rel=1e-12)
    with pytest.raises(ValueError, match=NO_REGION):
        SelectiveTest(localizer, 1.0, lam=1e6, device="cpu").conditioning_line(x, r)


def test_empty_region_is_reported_not_nan(localizer, pair):
    res = SelectiveTest(localizer, 1.0, lam=1e6, device="cpu").test(*pair)
    assert res.p_value is None and res.message == NO_REGION and res.region_size == 0
    assert not res.selected and res.to_dict()["p_value"] is None


def test_errors(localizer, pair):
    x, r = pair
    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        st.test(bad, r)
    with pytest.raises(ValueError, match="reference shape"):
        st.test(x, r[:4, :4])
    with pytest.raises(ValueError, match="does not match the model"):
        st.test(np.zeros((9, 9)), np.zeros((9, 9)))
    with pytest.raises(ValueError, match="method"):
        st.test(x, r, method="bogus")
    with pytest.raises(ValueError, match="noise_var must be"):
        SelectiveTest(localizer, np.ones((3, 3)), lam=LAM, device="cpu").test(x, r)
    with pytest.raises(ValueError, match="symmetric"):
        SelectiveTest(localizer, np.triu(np.ones((64, 64))), lam=LAM, device="cpu").test(x, r)
    with pytest.raises(ValueError, match="positive definite"):
        SelectiveTest(localizer, np.ones((64, 64)), lam=LAM, device="cpu").test(x, r)
    with pytest.raises(ValueError, match="> 0"):
        SelectiveTest(localizer, -1.0, lam=LAM, device="cpu").test(x, r)
    with pytest.raises(ValueError, match="not fitted"):
        SelectiveTest(SimpleNamespace(), 1.0).test(x, r)
    with pytest.raises(ValueError, match="termination"):
        SelectiveTest(localizer, 1.0, termination="never").test(x, r)
    for bad_batch in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            SelectiveTest(localizer, 1.0, batch_size=bad_batch).test(x, r)


def test_default_batch_size_follows_image_size(localizer):
    st = SelectiveTest(localizer, 1.0)
    assert [st.search_batch_size(n) for n in (64, 256, 257, 1024)] == [32, 32, 16, 16]
    assert SelectiveTest(localizer, 1.0, batch_size=5).search_batch_size(64) == 5


def test_many_matches_single_and_parallel(localizer, pair):
    rng = np.random.default_rng(11)
    imgs = rng.standard_normal((3, D, D))
    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu", termination="precision")
    single = [st.test(i, pair[1], "oc").p_value for i in imgs]
    many = [res.p_value for res in st.test_many(imgs, pair[1], "oc")]
    assert many == single
    par = [res.p_value for res in st.test_many(imgs, np.stack([pair[1]] * 3), "oc", n_jobs=2)]
    assert par == pytest.approx(single, rel=1e-12)
    with pytest.raises(ValueError, match="references shape"):
        st.test_many(imgs, imgs[:2])


def test_many_progress_bar(localizer, pair, capsys):
    imgs = np.random.default_rng(12).standard_normal((2, D, D))
    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu")
    quiet = st.test_many(imgs, pair[1], "naive")
    assert capsys.readouterr().err == ""
    shown = st.test_many(imgs, pair[1], "naive", verbose=True)
    assert "naive p-values" in capsys.readouterr().err
    assert [r.p_value for r in shown] == [r.p_value for r in quiet]


@pytest.mark.slow
def test_null_validity_smoke(localizer):
    """100 seeded null pairs: parametric p-values uniform, rejection near alpha (opt-in)."""
    from scipy.stats import kstest

    st = SelectiveTest(localizer, 1.0, lam=LAM, device="cpu", termination="precision")
    rng = np.random.default_rng(123)
    ps, naive = [], []
    for _ in range(100):
        res = st.test(rng.standard_normal((D, D)), rng.standard_normal((D, D)))
        if res.selected:
            ps.append(res.p_value)
            naive.append(res.naive_p_value)
    assert len(ps) >= 50
    assert kstest(ps, "uniform").pvalue > 1e-3
    assert np.mean(np.array(ps) <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / len(ps))
