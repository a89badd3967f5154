"""The rank test (diffad.selective.rank): its statistic against a brute-force oracle, its
p-value, its consistency between healthy nulls and tested images, validity and power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from skimage.measure import label
from sklearn.exceptions import NotFittedError

from diffad.image.ddpm_localizer import DDPMLocalizer
from diffad.selective.covariance import NoiseCovariance
from diffad.selective.dal import SelectiveTest
from diffad.selective.rank import components, rank_p_value, rank_statistic

pytestmark = pytest.mark.usefixtures("torch_threads")

D = 8
ALPHA = 0.05


def test_components_are_those_of_scikit_image():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((1, 12, 12)) < 0.4
        ours, n = components(mask)
        theirs = label(mask[0], connectivity=1)
        assert n == theirs.max()
        # The same partition: each of our labels maps to exactly one of theirs.
        pairs = {(a, b) for a, b in zip(ours[0].ravel(), theirs.ravel(), strict=True)}
        assert len(pairs) == n + 1


def test_the_statistic_is_the_most_extreme_component_by_brute_force():
    rng = np.random.default_rng(1)
    sigma2, f = 0.3, 0.5
    cov = NoiseCovariance(sigma2, 100, (1, 10, 10))
    for _ in range(20):
        x, ref = rng.standard_normal((2, 1, 10, 10))
        emap = rng.random((1, 10, 10))
        found = rank_statistic(emap, 0.7, x, ref, cov, f)
        labels = label(emap[0] > 0.7, connectivity=1)
        z = []
        for k in range(1, labels.max() + 1):
            c = labels == k
            z.append((x[0][c] - ref[0][c]).mean() / np.sqrt((1 + f) * sigma2 / c.sum()))
        best = int(np.argmax(np.abs(z)))
        assert found.z == pytest.approx(z[best], rel=1e-12)
        assert np.array_equal(found.region[0], labels == best + 1)
    assert rank_statistic(np.zeros((1, 10, 10)), 0.5, x, ref, cov, f) is None


def test_rank_p_value():
    null = np.array([0.0, 1.0, 2.0, 3.0])
    assert rank_p_value(2.5, null) == pytest.approx(2 / 5)
    assert rank_p_value(-3.0, null) == pytest.approx(2 / 5)  # two-sided, ties count
    assert rank_p_value(9.0, null) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="healthy null images"):
        rank_p_value(1.0, np.array([]))
    with pytest.raises(ValueError, match="finite"):
        rank_p_value(1.0, np.array([1.0, np.nan]))


@pytest.fixture(scope="module")
def model(seed):
    rng = np.random.default_rng([seed, 0])
    train = rng.standard_normal((32, 1, D, D)).astype(np.float32)
    return DDPMLocalizer(
        unet={"channels": [4, 8], "time_dim": 8}, t_start=300, ddim_steps=2, train_steps=60,
        batch_size=8, random_state=seed, device="cpu", verbose=False, score="l1",
    ).fit(train)  # fmt: skip


def test_a_null_image_gets_its_own_stored_statistic(model, seed):
    healthy = np.random.default_rng([seed, 1]).standard_normal((60, 1, D, D))
    tester = SelectiveTest(model, random_state=seed).calibrate(healthy, check_fraction=0.1)
    m = len(tester.null_z_["rank"])
    assert m >= 20 and np.all(tester.null_z_["rank"] >= 0)
    assert tester.recommended_test(ALPHA)[0] == "rank"
    # Recompute the null images' statistics through the public test: the same function.
    perm = np.random.default_rng(seed).permutation(len(healthy))
    null = np.sort(perm[6 : 6 + m])
    got = [tester.test(healthy[i], method="rank") for i in null]
    z = np.array([0.0 if r.z is None else abs(r.z) for r in got])
    np.testing.assert_array_equal(z, tester.null_z_["rank"])
    for r in got:
        if r.selected:
            assert r.region.shape == (1, D, D) and r.region.sum() == r.region_size > 0
            assert 1 / (m + 1) <= r.p_value <= 1


def test_rank_is_valid_on_fresh_calibrations_and_finds_a_bright_square(model, seed):
    # Each trial calibrates on fresh healthy images and tests one more healthy image and one
    # with a bright 3×3 square: the healthy p-values are independent draws, each with
    # P(p ≤ α) = ⌊α(m + 1)⌋ / (m + 1) by exchangeability.
    rng = np.random.default_rng([seed, 2])
    trials, healthy_p, square_p = 60, [], []
    for t in range(trials):
        cal = rng.standard_normal((50, 1, D, D))
        tester = SelectiveTest(model, random_state=t).calibrate(cal, check_fraction=0.1)
        x = rng.standard_normal((D, D))
        healthy_p.append(tester.test(x, method="rank").p_value or 1.0)
        i, j = rng.integers(0, D - 3 + 1, size=2)
        x[i : i + 3, j : j + 3] += 6.0
        square_p.append(tester.test(x, method="rank").p_value or 1.0)
    m = len(tester.null_z_["rank"])
    level = np.floor(ALPHA * (m + 1)) / (m + 1)
    lo, hi = stats.binom.interval(0.999, trials, level)
    assert lo <= np.sum(np.array(healthy_p) <= ALPHA) <= hi
    assert np.mean(healthy_p) == pytest.approx(0.5, abs=0.15)  # uniform on {1, …, m+1}/(m+1)
    # Measured with DIFFAD_TEST_SEED = 0..5: 1–5 of 60 healthy images rejected, mean p
    # 0.46–0.57, the square rejected in 60–100 % of the trials.
    assert np.mean(np.array(square_p) <= ALPHA) >= 0.4


def test_selection_on_the_shown_map(model, seed, tmp_path):
    # An SSIM-ens localiser: rank and fission select on the SSIM-ens map it shows.
    loc = DDPMLocalizer(**{**model.get_params(), "score": "ssim-ens"})
    loc.__dict__.update({k: v for k, v in model.__dict__.items() if k.endswith("_")})
    healthy = np.random.default_rng([seed, 3]).standard_normal((50, 1, D, D))
    tester = SelectiveTest(loc, selection="shown").calibrate(healthy, check_fraction=0.1)
    assert set(tester.null_z_) == {"fission", "rank"}
    x = healthy[0, 0].copy()
    result = tester.test(x, method="rank")
    shown = loc.anomaly_map(x[None])[0]
    assert result.selected
    assert np.all(shown[result.region[0]] > tester.lam_rank_)  # a component of the shown map
    assert tester.lam_ is None  # no region-map λ: nothing was traced
    perm = np.random.default_rng(0).permutation(len(healthy))
    null = np.sort(perm[5 : 5 + len(tester.null_z_["rank"])])
    z = [tester.test(healthy[i], method="rank").z for i in null]
    np.testing.assert_array_equal(np.abs([0.0 if v is None else v for v in z]),
                                  tester.null_z_["rank"])  # fmt: skip
    with pytest.raises(ValueError, match="traces the region map"):
        tester.test(x, method="parametric")
    tester.save(tmp_path / "t")
    again = SelectiveTest.load(tmp_path / "t", loc)
    assert again.selection == "shown"
    assert again.test(x, method="rank").p_value == result.p_value
    with pytest.raises(ValueError, match="selection"):
        SelectiveTest.load(tmp_path / "t", loc, selection="region")
    with pytest.raises(ValueError, match="selection must be"):
        SelectiveTest(loc, selection="ssim").test(x, method="rank")
    tester.selection = "region"  # after calibration: its λ belongs to the shown map
    with pytest.raises(ValueError, match="calibrated with 'shown'"):
        tester.test(x, method="rank")
    tester.calibrate(healthy, check_fraction=0.1)  # recalibrating on the region map is allowed
    assert tester.lam_ is not None and tester.test(x, method="rank").p_value is not None


def test_rank_refuses_what_would_break_exchangeability(model, seed, tmp_path):
    healthy = np.random.default_rng([seed, 4]).standard_normal((50, 1, D, D))
    tester = SelectiveTest(model).calibrate(healthy, check_fraction=0.1)
    x = healthy[0, 0]
    # Healthy nulls scored against the calibrated mean reference: no other reference.
    with pytest.raises(ValueError, match="pass no reference"):
        tester.test(x, reference=healthy[1, 0], method="rank")
    # A calibration saved before the rank test had its level: fission, saying why.
    tester.save(tmp_path / "t")
    config = tmp_path / "t" / "config.json"
    text = config.read_text()
    config.write_text(text.replace('"lam_rank"', '"lam_rank_old"'))
    old = SelectiveTest.load(tmp_path / "t", model)
    method, _, why = old.recommended_test(ALPHA)
    assert method == "fission" and "recalibrate" in why
    with pytest.raises(NotFittedError, match="predates the rank test"):
        old.test(x, method="rank")


def _tile_line(x, variances, f, result):
    """The line a + b·z of the tile test for ``result``'s tile, computed here from the
    per-pixel variances and the reference factor f (zero reference)."""
    tile = result.region.reshape(-1)
    v = variances.reshape(-1)
    sd = np.sqrt((1 + f) * v[tile].sum()) / tile.sum()
    z = x.reshape(-1)[tile].mean() / sd
    assert result.z == pytest.approx(z, rel=1e-10)
    b = v * tile / (tile.sum() * sd)
    return x.reshape(-1) - z * b, b


def test_tile_truncation_set_matches_a_dense_grid(model, seed):
    rng = np.random.default_rng([seed, 5])
    x = rng.standard_normal((1, D, D))
    x[0, 1:4, 1:4] += 2.0
    variances = 0.5 + rng.random((1, D, D))
    tester = SelectiveTest(
        model, noise_var=variances, tile_size=4, reference_var_factor=0.5,
        termination="exhaustive", z_max=8.0, device="cpu",
    )  # fmt: skip
    # λ just below the map's peak: few pixels pass it, so the event fails on part of the line
    # (the first of these levels where the grid shows it does).
    peak = float(tester._tracer(x.shape).selection_map(x[None]).max())
    for factor in (0.9, 0.97, 0.995):
        tester.lam = factor * peak
        result = tester.test_prepared(x, np.zeros_like(x), "tile")
        assert result.selected and result.region.sum() == 16
        a, b = _tile_line(x, variances, 0.5, result)
        reach = max(8.0, abs(result.z) + 5.0)  # the range the search covers
        zs = np.linspace(-reach, reach, 4001)
        maps = tester._tracer(x.shape).selection_map(
            (a[None] + zs[:, None] * b[None]).reshape(-1, 1, D, D)
        )
        holds = (maps[:, result.region.reshape(-1)] > tester.lam).any(axis=1)
        if not holds.all():
            break
    assert holds.any() and not holds.all()  # a truncation set that is not the whole line
    inside = np.zeros_like(holds)
    near_edge = np.zeros_like(holds)
    for lo, hi in result.intervals:
        inside |= (zs >= lo) & (zs <= hi)
        near_edge |= (np.abs(zs - lo) < 1e-3) | (np.abs(zs - hi) < 1e-3)
    assert np.array_equal(holds[~near_edge], inside[~near_edge])
    # The p-value is the truncated normal on those intervals, times the 4 tiles.
    mass = sum(stats.norm.cdf(hi) - stats.norm.cdf(lo) for lo, hi in result.intervals)
    below = sum(
        stats.norm.cdf(min(hi, result.z)) - stats.norm.cdf(lo)
        for lo, hi in result.intervals if lo < result.z
    )  # fmt: skip
    p_tile = 2 * min(below / mass, 1 - below / mass)
    assert result.p_value == pytest.approx(min(1.0, 4 * p_tile), rel=1e-6)


def test_tile_test_is_valid_and_finds_a_bright_square(model, seed):
    rng = np.random.default_rng([seed, 6])
    tester = SelectiveTest(
        model, noise_var=1.0, lam=0.6, tile_size=4, reference_var_factor=0.0,
        termination="decision", alpha=ALPHA, device="cpu",
    )  # fmt: skip
    null_p, square_p, tested = [], [], 0
    for _ in range(40):
        x = rng.standard_normal((1, D, D))
        res = tester.test_prepared(x, np.zeros_like(x), "tile")
        tested += res.selected
        null_p.append(1.0 if res.p_value is None else res.p_value)
        i, j = rng.integers(0, D - 3 + 1, size=2)
        x[0, i : i + 3, j : j + 3] += 4.0
        res = tester.test_prepared(x, np.zeros_like(x), "tile")
        square_p.append(1.0 if res.p_value is None else res.p_value)
    # Measured with DIFFAD_TEST_SEED = 0..5: 40 of 40 tested, 1–3 null rejections, the square
    # rejected in 97.5–100 % of the draws.
    assert tested >= 30  # most null images have a candidate tile at this λ
    # Bonferroni over the tiles is conservative: at most the binomial upper bound at α.
    assert np.sum(np.array(null_p) < ALPHA) <= stats.binom.ppf(0.999, 40, ALPHA)
    assert np.mean(np.array(square_p) < ALPHA) >= 0.5
