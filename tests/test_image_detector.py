"""The detector face of the image localisers: preprocessing, scores, calibration, conformal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.covariance import LedoitWolf
from sklearn.exceptions import NotFittedError

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


@pytest.fixture(scope="module")
def region_test(calibrated, seed):
    """The region test of ``calibrated``, calibrated on the same healthy images."""
    return SelectiveTest(calibrated, device="cpu", termination="decision").calibrate(
        _healthy(12, seed + 1), lam_percentile=90.0
    )


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


def test_calibration_survives_save_and_load(calibrated, region_test, tmp_path):
    calibrated.save(tmp_path / "m")
    loaded = DDPMLocalizer.load(tmp_path / "m", device="cpu")
    assert loaded.threshold_ == calibrated.threshold_
    assert loaded.pixel_thresholds_ == calibrated.pixel_thresholds_
    np.testing.assert_array_equal(loaded.calibration_scores_, calibrated.calibration_scores_)
    x = _healthy(3, 99)
    np.testing.assert_array_equal(loaded.decision_function(x), calibrated.decision_function(x))
    region_test.save(tmp_path / "m" / "region_test")
    test = SelectiveTest.load(tmp_path / "m" / "region_test", loaded, device="cpu")
    for name in ("lam_", "reference_var_factor_", "noise_kind_", "filter_size"):
        assert getattr(test, name) == getattr(region_test, name)
    for name in ("reference_", "noise_var_", "check_images_"):
        np.testing.assert_array_equal(getattr(test, name), getattr(region_test, name))


def test_checkpoints_of_the_per_position_noise_rule_load_with_a_note(calibrated, tmp_path):
    import json

    calibrated.save(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    payload = json.loads(config_file.read_text())
    del payload["config"]["noise_rule"], payload["config"]["params"]["seed"]
    del payload["config"]["params"]["n_samples"]
    config_file.write_text(json.dumps(payload))
    with pytest.warns(UserWarning, match="seed \\+ i.*calibrate"):
        old = DDPMLocalizer.load(tmp_path / "old", device="cpu")
    assert old.seed == 0 and not hasattr(old, "threshold_")  # its calibration is not reused
    x = _healthy(2, 5)
    np.testing.assert_array_equal(old.anomaly_map(x), calibrated.anomaly_map(x))


def test_conformal_detector_wraps_a_fitted_localizer(calibrated, seed):
    conf = ConformalDetector(calibrated, prefit=True).fit(_healthy(19, seed + 4))
    test = _healthy(4, seed + 5)
    p = conf.p_values(test)
    assert p.shape == (4,) and np.all((p >= 1 / 20) & (p <= 1))
    assert conf.detector_ is calibrated
    # A test image that is also a calibration image scores exactly as it did there, whatever
    # its position: calibration and test scores come from one function of the image.
    mixed = np.concatenate([test, _healthy(19, seed + 4)[:1]])
    assert conf.p_values(mixed)[-1] == pytest.approx(
        (1 + np.sum(conf.calibration_scores_ >= conf.calibration_scores_[0])) / 20
    )


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
    assert local.kind == "local" and estimate_noise_model(x).kind == "tapered"  # auto
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


def test_selective_test_takes_its_defaults_from_the_calibration(calibrated, region_test, seed):
    x = _healthy(1, seed + 6)[0]
    x[0, 2:5, 2:5] += 0.4  # a bright patch: a region is selected
    res = region_test.test(x)  # reference, noise_var and lam from calibrate()
    explicit = SelectiveTest(
        calibrated, region_test.noise_var_, lam=region_test.lam_, device="cpu",
        termination="decision", reference_var_factor=region_test.reference_var_factor_,
    ).test(x, region_test.reference_)  # fmt: skip
    assert res.selected and res.region_size == explicit.region_size
    assert res.z == pytest.approx(explicit.z) and res.p_value == pytest.approx(explicit.p_value)
    # The tested region is the one the map the model shows flags: same model, same noise.
    shown = calibrated.localize(x[None]).reconstruction[0]
    from diffad.image.region_maps import reconstruction_map

    selected = reconstruction_map(x[None], shown[None], 3)[0] > region_test.lam_
    assert np.mean(selected == res.region) > 0.98  # float32 map vs float64 trace at λ
    uncalibrated = DDPMLocalizer(unet=TINY, train_steps=2, verbose=False).fit(_healthy(4, 0))
    with pytest.raises(NotFittedError, match="lam is needed"):
        SelectiveTest(uncalibrated, 1.0).test(x, x)
    with pytest.raises(NotFittedError, match="reference is needed"):
        SelectiveTest(uncalibrated, 1.0, lam=0.1).test(x)
    with pytest.raises(NotFittedError, match="not fitted"):
        SelectiveTest(DDPMLocalizer(), 1.0, lam=0.1).test(x, x)


def test_selective_test_applies_the_stored_preprocessing(seed):
    """Raw pixels in [0, 255] are scaled as the localiser scales them before testing."""
    raw = _healthy(16, seed) * 255
    loc = DDPMLocalizer(
        unet=TINY, train_steps=5, batch_size=8, t_start=100, ddim_steps=2, verbose=False,
        device="cpu", preprocessing={"intensity": "range"},
    ).fit(list(raw[:, 0]))  # fmt: skip
    st = SelectiveTest(loc, 0.01, lam=0.05, device="cpu", termination="decision")
    img = raw[0, 0].copy()
    img[2:5, 2:5] = 255
    via_raw = st.test(img, raw[1, 0])
    prepared = loc.prepare([img, raw[1, 0]])
    via_prepared = st.test_prepared(prepared[0], prepared[1])
    assert via_raw.selected and via_raw.z == pytest.approx(via_prepared.z)
    np.testing.assert_array_equal(via_raw.region, via_prepared.region)
