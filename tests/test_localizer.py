"""DDPMLocalizer: training, seeded reconstruction, maps, persistence and input errors."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from diffad.diffusion.chain import ddim_timesteps, draw_reconstruction_noise, reconstruct
from diffad.diffusion.unet import UNet, UNetConfig
from diffad.image.ddpm_localizer import DDPMLocalizer

TINY = {"channels": [4, 8], "time_dim": 8}


pytestmark = pytest.mark.usefixtures("torch_threads")


def _images(n=12, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted(seed):
    return DDPMLocalizer(
        unet=TINY,
        train_steps=20,
        batch_size=6,
        t_start=200,
        ddim_steps=3,
        random_state=seed,
        verbose=False,
    ).fit(_images(seed=seed))


def test_fit_sets_fitted_attributes(fitted):
    assert fitted.image_shape_ == (1, 8, 8)
    assert len(fitted.loss_history_) == 20
    assert np.all(np.isfinite(fitted.loss_history_))
    assert not fitted.model_.training  # eval mode: BatchNorm uses running statistics
    assert fitted.noise_schedule_.num_steps == 1000


def test_training_is_seeded_and_lowers_the_loss(seed):
    x = _images(16, 8, seed=seed)
    kw = dict(unet=TINY, train_steps=60, batch_size=8, lr=3e-3, verbose=False)
    a = DDPMLocalizer(random_state=seed + 1, **kw).fit(x)
    b = DDPMLocalizer(random_state=seed + 1, **kw).fit(x)
    c = DDPMLocalizer(random_state=seed + 2, **kw).fit(x)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    assert not np.array_equal(a.loss_history_, c.loss_history_)
    # Random-init ε-prediction starts near loss 1 and improves on such simple data.
    assert a.loss_history_[-10:].mean() < a.loss_history_[:10].mean()


def test_fit_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DDPMLocalizer(unet=TINY, train_steps=2, batch_size=4, verbose=False).fit(_images(4))
    assert torch.equal(torch.rand(3), expected)


def test_augmentation_runs_and_changes_training():
    x = _images(8)
    kw = dict(unet=TINY, train_steps=5, batch_size=4, verbose=False)
    plain = DDPMLocalizer(**kw).fit(x)
    aug = DDPMLocalizer(hflip=True, max_shift=2, **kw).fit(x)
    assert not np.array_equal(plain.loss_history_, aug.loss_history_)


def _with(fitted, **params):
    """A copy of the fitted model with other inference parameters."""
    return copy.deepcopy(fitted).set_params(**params)


def test_reconstruct_matches_shared_engine_and_is_seeded(fitted):
    x = _images(3, seed=5)
    seven = _with(fitted, seed=7)
    rec = seven.reconstruct(x)
    assert rec.shape == x.shape and rec.dtype == np.float32
    np.testing.assert_array_equal(rec, seven.reconstruct(x))
    assert not np.allclose(rec, _with(fitted, seed=8).reconstruct(x))
    # Every image uses the draws of ``seed``: replay image 1 by hand with the shared engine.
    steps = ddim_timesteps(200, 3)
    xi = torch.from_numpy(x[1:2, None])
    noise = draw_reconstruction_noise(xi.shape, steps, 7)
    with torch.no_grad():
        ref = reconstruct(fitted.model_, fitted.noise_schedule_, xi, steps, noise).numpy()[:, 0]
    np.testing.assert_allclose(rec[1:2], ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 2, 6])
def test_scores_are_a_function_of_the_image_alone(fitted, batch_size):
    """Reordering or splitting the images changes no map bit; the ``batch_size`` setting
    (how many images the network runs at once) only the float32 rounding."""
    x = _images(20, seed=3)
    model = _with(fitted, batch_size=batch_size)
    maps = model.anomaly_map(x)
    np.testing.assert_allclose(maps, fitted.anomaly_map(x), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(model.anomaly_map(x[::-1])[::-1], maps)
    one_by_one = np.concatenate([model.anomaly_map(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(one_by_one, maps)
    np.testing.assert_array_equal(model.anomaly_map(x[5:12]), maps[5:12])


def test_localize_returns_one_frozen_result(fitted):
    x = _images(4, seed=2)
    res = fitted.localize(x)
    assert len(res) == 4 and not res.calibrated
    assert res.image.shape == (4, 1, 8, 8) and res.reconstruction.shape == (4, 1, 8, 8)
    assert res.anomaly_map.shape == (4, 8, 8) and res.pred_score.shape == (4,)
    assert res.pred_mask is None and res.pred_label is None
    np.testing.assert_array_equal(res.anomaly_map, fitted.anomaly_map(x))
    l1 = _with(fitted, score="l1").localize(x)  # the L1 map is |X - D(X)| of that same D(X)
    np.testing.assert_allclose(l1.anomaly_map, np.abs(x - l1.reconstruction[:, 0]), atol=1e-7)
    np.testing.assert_array_equal(res.pred_score, fitted.decision_function(x))
    with pytest.raises(ValueError, match="read-only"):
        res.anomaly_map[0, 0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.pred_score = None
    assert x.flags.writeable  # the caller's array is not frozen


@pytest.mark.parametrize("score", ["l1", "ssim", "ssim-ens", "ssim-ens-mean"])
def test_anomaly_map_shapes_and_seed(fitted, score):
    x = _images(2, seed=4)
    m = _with(fitted, score=score).anomaly_map(x)
    assert m.shape == (2, 8, 8) and np.all(np.isfinite(m))
    np.testing.assert_array_equal(m, _with(fitted, score=score).anomaly_map(x))
    assert not np.allclose(m, _with(fitted, score=score, seed=1).anomaly_map(x))


def test_map_parameters_and_bad_score(fitted):
    x = _images(2, seed=4)
    a = _with(fitted, score="l1", t_start=100, ddim_steps=2).anomaly_map(x)
    b = _with(fitted, score="l1").anomaly_map(x)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="unknown score"):
        _with(fitted, score="psnr").anomaly_map(x)
    with pytest.raises(ValueError, match="t_start"):
        _with(fitted, t_start=5000).anomaly_map(x)
    assert "seed" in fitted.get_params() and "n_samples" in fitted.get_params()


def test_save_load_roundtrip(fitted, tmp_path):
    x = _images(2, seed=9)
    fitted.save(tmp_path / "m")
    loaded = DDPMLocalizer.load(tmp_path / "m")
    assert loaded.image_shape_ == fitted.image_shape_
    assert loaded.get_params()["t_start"] == 200
    np.testing.assert_array_equal(loaded.anomaly_map(x), fitted.anomaly_map(x))
    for name, buf in fitted.model_.named_buffers():  # BatchNorm running statistics
        assert torch.equal(buf, dict(loaded.model_.named_buffers())[name])


def test_load_rejects_other_architecture(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    cfg = (
        (tmp_path / "m" / "config.json")
        .read_text()
        .replace('"channels": [\n', '"channels": [\n16,\n', 1)
    )
    (tmp_path / "m" / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="architecture"):
        DDPMLocalizer.load(tmp_path / "m")
    with pytest.raises(ValueError, match="not a diffad checkpoint"):
        DDPMLocalizer.load(tmp_path / "missing")


def test_input_errors(fitted):
    with pytest.raises(ValueError, match="channel"):
        fitted.anomaly_map(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="trained on"):
        fitted.anomaly_map(np.zeros((1, 16, 16), np.float32))
    bad = _images(2)
    bad[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.anomaly_map(bad)
    with pytest.raises(ValueError, match="empty"):
        fitted.anomaly_map(np.zeros((0, 8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        fitted.anomaly_map(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="not fitted"):
        DDPMLocalizer().anomaly_map(_images(1))


def test_fit_errors():
    with pytest.raises(ValueError, match="divisible"):
        DDPMLocalizer(unet=TINY, train_steps=1, verbose=False).fit(np.zeros((2, 7, 7)))
    with pytest.raises(ValueError, match="in_channels"):
        DDPMLocalizer(unet=UNetConfig(in_channels=3, channels=[4]), verbose=False).fit(_images(2))
    with pytest.raises(ValueError, match="empty"):
        DDPMLocalizer(verbose=False).fit(np.zeros((0, 8, 8)))
    with pytest.raises(ValueError, match="at least 2"):
        DDPMLocalizer(unet=TINY, verbose=False).fit(_images(1))
    with pytest.raises(ValueError, match="lr"):
        DDPMLocalizer(lr=0.0).fit(_images(2))


def test_default_network_is_the_published_unet():
    loc = DDPMLocalizer(train_steps=1, batch_size=2, verbose=False).fit(_images(2))
    assert loc.model_.config == UNetConfig()
    assert isinstance(loc.model_, UNet)


def test_max_train_t_restricts_training_steps():
    x = _images(8)
    kw = dict(unet=TINY, train_steps=5, batch_size=4, verbose=False)
    full = DDPMLocalizer(**kw).fit(x)
    low = DDPMLocalizer(max_train_t=200, **kw).fit(x)
    assert not np.array_equal(full.loss_history_, low.loss_history_)
    with pytest.raises(ValueError, match="max_train_t"):
        DDPMLocalizer(max_train_t=1000, **kw).fit(x)


def test_n_samples_averages_seeded_reconstructions(fitted):
    from diffad.image.ddpm_localizer import SAMPLE_SEED_STRIDE

    x = _images(2, seed=6)
    mean2 = _with(fitted, seed=3, n_samples=2).reconstruct(x)
    ref = (
        _with(fitted, seed=3).reconstruct(x).astype(np.float64)
        + _with(fitted, seed=3 + SAMPLE_SEED_STRIDE).reconstruct(x)
    ) / 2
    np.testing.assert_allclose(mean2, ref, atol=1e-6)
    m = _with(fitted, score="l1", seed=3, n_samples=2).anomaly_map(x)
    np.testing.assert_allclose(m, np.abs(x - mean2), atol=1e-6)
    with pytest.raises(ValueError, match="n_samples"):
        _with(fitted, n_samples=0).reconstruct(x)
    with pytest.raises(ValueError, match="one reconstruction"):
        _with(fitted, n_samples=2).region_map_definition()
