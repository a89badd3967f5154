"""The detector face of the image localisers: preprocessing, scores, calibration, conformal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.covariance import LedoitWolf

from diffad import ConformalDetector, DDPMLocalizer, SelectiveTest
from diffad.image.preprocessing import ImagePreprocessing
from diffad.selective.noise import TAPER_RADIUS, estimate_noise_model, healthy_rejection_rate

pytestmark = pytest.mark.usefixtures("torch_threads")

TINY = {"channels": [4, 8], "time_dim": 8}


def _healthy(n: int, seed: int, size: int = 8) -> np.ndarray:
    """Smooth blobs plus noise, values in [0, 1]: (n, 1, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = 0.5 + 0.3 * np.sin(3 * xx + rng.uniform(0, 1, (n, 1, 1)))
    return np.clip(base + 0.05 * rng.standard_normal((n, size, size)), 0, 1)[:, None].astype(
        np.float32
    )


@pytest.fixture(scope="module")
def calibrated(seed):
    loc = DDPMLocalizer(
        unet=TINY, train_steps=40, batch_size=8, t_start=100, ddim_steps=2,
        random_state=seed, verbose=False, device="cpu",
    ).fit(_healthy(24, seed))  # fmt: skip
    return loc.calibrate(_healthy(12, seed + 1))


# ---------------------------------------------------------------- preprocessing
def test_range_preprocessing_is_fitted_once_and_applied_identically():
    rng = np.random.default_rng(0)
    train = [rng.uniform(20, 220, (6, 6)) for _ in range(5)]
    p = ImagePreprocessing().fit(train)
    assert p.size == (6, 6) and p.channels == 1
    lo, hi = np.percentile(np.concatenate([t.ravel() for t in train]), [1, 99])
    assert (p.low, p.high) == pytest.approx((lo, hi))
    out = p.transform(train[:2])
    np.testing.assert_allclose(
        out[:, 0], np.clip((np.stack(train[:2]) - lo) / (hi - lo), 0, 1), rtol=1e-6
    )
    again = ImagePreprocessing.from_dict(p.to_dict()).transform(train[:2])
    np.testing.assert_array_equal(out, again)


def test_colour_models_keep_three_channels_and_refuse_grey():
    rng = np.random.default_rng(1)
    colour = [rng.random((4, 4, 3)) for _ in range(3)]
    p = ImagePreprocessing(intensity="none").fit(colour)
    assert p.channels == 3 and p.transform(colour).shape == (3, 3, 4, 4)
    with pytest.raises(ValueError, match="3-channel"):
        p.transform([rng.random((4, 4))])


def test_other_sizes_are_an_error_unless_resizing_is_asked_for():
    p = ImagePreprocessing(intensity="none").fit([np.zeros((8, 8)), np.ones((8, 8))])
    with pytest.raises(ValueError, match="16x16 pixels but the model takes 8x8"):
        p.transform([np.zeros((16, 16))])
    q = ImagePreprocessing(intensity="none", resize=True).fit([np.zeros((8, 8)), np.ones((8, 8))])
    assert q.transform([np.ones((16, 12)) * 0.5]).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((2, 3, 5, 5, 1)), "must be"),
        (np.full((1, 8, 8), np.nan), "NaN"),
        (np.full((1, 8, 8), 2.0), r"\[0, 1\]"),
        (np.zeros((1, 5, 8, 8)), "C = 1 or 3"),
    ],
)
def test_bad_images_are_refused(bad, match):
    p = ImagePreprocessing(intensity="none").fit([np.zeros((8, 8)), np.ones((8, 8))])
    with pytest.raises(ValueError, match=match):
        p.transform(bad)


# ---------------------------------------------------------------- detector face
def test_scores_thresholds_and_masks(calibrated, seed):
    x = _healthy(5, seed + 2)
    scores = calibrated.decision_function(x)
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    np.testing.assert_array_equal(scores, calibrated.decision_function(x))  # no state change
    maps = calibrated.anomaly_map(x)
    np.testing.assert_allclose(scores, maps.reshape(5, -1).max(axis=1), rtol=1e-6)
    cal = calibrated.calibration_scores_
    assert calibrated.threshold_ == pytest.approx(np.percentile(cal, 95))
    np.testing.assert_array_equal(calibrated.predict(x), (scores > calibrated.threshold_))
    masks = calibrated.predict_masks(x, level=99)
    np.testing.assert_array_equal(masks, maps > calibrated.pixel_thresholds_[99])
    with pytest.raises(ValueError, match="level"):
        calibrated.predict_masks(x, level=90)


def test_calibration_survives_save_and_load(calibrated, tmp_path):
    calibrated.save(tmp_path / "m")
    loaded = DDPMLocalizer.load(tmp_path / "m", device="cpu")
    for name in ("threshold_", "lam_", "reference_var_factor_", "noise_kind_"):
        assert getattr(loaded, name) == getattr(calibrated, name)
    np.testing.assert_array_equal(loaded.reference_, calibrated.reference_)
    np.testing.assert_array_equal(loaded.noise_var_, calibrated.noise_var_)
    np.testing.assert_array_equal(loaded.check_images_, calibrated.check_images_)
    x = _healthy(3, 99)
    np.testing.assert_array_equal(loaded.decision_function(x), calibrated.decision_function(x))


def test_conformal_detector_wraps_a_fitted_localizer(calibrated, seed):
    conf = ConformalDetector(calibrated, prefit=True).fit(_healthy(19, seed + 4))
    p = conf.p_values(_healthy(4, seed + 5))
    assert p.shape == (4,) and np.all((p >= 1 / 20) & (p <= 1))
    assert conf.detector_ is calibrated


def test_conformal_detector_trains_a_clone_of_an_unfitted_localizer(seed):
    loc = DDPMLocalizer(
        unet=TINY, train_steps=5, batch_size=4, t_start=50, ddim_steps=1,
        verbose=False, device="cpu",
    )  # fmt: skip
    conf = ConformalDetector(loc, calibration_fraction=0.3, random_state=seed)
    conf.fit(_healthy(20, seed))
    assert not hasattr(loc, "model_") and conf.calibration_scores_.shape == (6,)


# ---------------------------------------------------------------- noise model and defaults
def test_noise_model_matches_numpy_and_ledoit_wolf():
    x = _healthy(30, 7)[:, :, :4, :4].astype(np.float64)
    flat = x.reshape(30, -1)
    pixel = estimate_noise_model(x, "pixel")
    np.testing.assert_allclose(pixel.noise_var.reshape(-1), flat.var(axis=0, ddof=1))
    np.testing.assert_allclose(pixel.reference.reshape(-1), flat.mean(axis=0))
    assert pixel.reference_var_factor == pytest.approx(1 / 30)
    scalar = estimate_noise_model(x, "scalar")
    assert scalar.noise_var == pytest.approx(flat.var(axis=0, ddof=1).mean())
    full = estimate_noise_model(x, "full")
    np.testing.assert_allclose(full.noise_var, LedoitWolf().fit(flat).covariance_, atol=1e-9)
    np.linalg.cholesky(full.noise_var)
    with pytest.raises(ValueError, match="at least 2"):
        estimate_noise_model(x[:1])


def test_local_noise_model_is_a_tapered_ledoit_wolf_matrix():
    x = _healthy(30, 3).astype(np.float64)
    lw = LedoitWolf().fit(x.reshape(30, -1)).covariance_
    local = estimate_noise_model(x, "local")
    assert local.kind == "local" and estimate_noise_model(x).kind == "local"  # auto
    cov = local.noise_var
    np.testing.assert_allclose(np.diag(cov), np.diag(lw), rtol=1e-6)  # taper is 1 at d = 0
    pos = np.stack(np.mgrid[0 : x.shape[2], 0 : x.shape[3]], -1).reshape(-1, 2)
    dist = np.sqrt(((pos[:, None] - pos[None]) ** 2).sum(-1))
    off = ~np.eye(len(pos), dtype=bool)
    assert np.all(cov[(dist >= TAPER_RADIUS) & off] == 0)  # compact support
    near = (dist > 0) & (dist < TAPER_RADIUS)
    assert np.all(np.abs(cov[near]) <= np.abs(lw[near]) + 1e-12)
    assert np.linalg.eigvalsh(cov).min() > 0  # the Schur product stays positive definite


def test_healthy_rejection_rate_band_matches_scipy():
    ps = [0.01, 0.2, None, 0.03, 0.5, 0.9, None, 0.7, 0.04, 0.6]
    check = healthy_rejection_rate(ps, alpha=0.05)
    assert (check.n_rejected, check.n_images, check.n_healthy) == (3, 10, 8)
    assert check.healthy_rejection_rate == pytest.approx(3 / 8)  # over the tested images
    ci = binomtest(3, 8).proportion_ci(method="exact")
    assert check.band == pytest.approx((ci.low, ci.high))
    assert check.adequate is (ci.low <= 0.05)
    assert "TOO MANY" in check.message() if not check.adequate else "consistent" in check.message()
    empty = healthy_rejection_rate([None, None])
    assert empty.n_healthy == 0 and empty.adequate and "nothing to check" in empty.message()


def test_selective_test_takes_its_defaults_from_the_calibration(calibrated, seed):
    st = SelectiveTest(calibrated, device="cpu", termination="decision")
    x = _healthy(1, seed + 6)[0]
    res = st.test(x)  # reference, noise_var and lam from the localizer
    explicit = SelectiveTest(
        calibrated, calibrated.noise_var_, lam=calibrated.lam_, device="cpu",
        termination="decision", reference_var_factor=calibrated.reference_var_factor_,
    ).test(x, calibrated.reference_)  # fmt: skip
    assert res.region_size == explicit.region_size
    if res.selected:
        assert res.z == pytest.approx(explicit.z) and res.p_value == pytest.approx(explicit.p_value)
    uncalibrated = DDPMLocalizer(unet=TINY, train_steps=2, verbose=False).fit(_healthy(4, 0))
    with pytest.raises(ValueError, match="lam is needed"):
        SelectiveTest(uncalibrated, 1.0).test(x, x)
    with pytest.raises(ValueError, match="reference is needed"):
        SelectiveTest(uncalibrated, 1.0, lam=0.1).test(x)
