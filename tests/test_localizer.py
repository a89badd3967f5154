"""DDPMLocalizer: training, seeded reconstruction, maps, persistence and input errors."""

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


def test_reconstruct_matches_shared_engine_and_is_seeded(fitted):
    x = _images(3, seed=5)
    rec = fitted.reconstruct(x, seed=7)
    assert rec.shape == x.shape and rec.dtype == np.float32
    np.testing.assert_array_equal(rec, fitted.reconstruct(x, seed=7))
    assert not np.allclose(rec, fitted.reconstruct(x, seed=8))
    # Image i uses seed + i: replay image 1 by hand with the shared reconstruction engine.
    steps = ddim_timesteps(200, 3)
    xi = torch.from_numpy(x[1:2, None])
    noise = draw_reconstruction_noise(xi.shape, steps, 8)
    with torch.no_grad():
        ref = reconstruct(fitted.model_, fitted.noise_schedule_, xi, steps, noise).numpy()[:, 0]
    np.testing.assert_allclose(rec[1:2], ref, rtol=0, atol=1e-6)


def test_maps_do_not_depend_on_batch_size(fitted):
    x = _images(5, seed=3)
    a = fitted.anomaly_map(x, score="l1")
    fitted.set_params(batch_size=2)
    try:
        b = fitted.anomaly_map(x, score="l1")
    finally:
        fitted.set_params(batch_size=6)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("score", ["l1", "ssim", "ssim-ens", "ssim-ens-mean"])
def test_anomaly_map_shapes_and_seed(fitted, score):
    x = _images(2, seed=4)
    m = fitted.anomaly_map(x, score=score, seed=0)
    assert m.shape == (2, 8, 8) and np.all(np.isfinite(m))
    np.testing.assert_array_equal(m, fitted.anomaly_map(x, score=score, seed=0))
    assert not np.allclose(m, fitted.anomaly_map(x, score=score, seed=1))


def test_anomaly_map_overrides_and_bad_score(fitted):
    x = _images(2, seed=4)
    a = fitted.anomaly_map(x, score="l1", t_start=100, ddim_steps=2)
    b = fitted.anomaly_map(x, score="l1")
    assert not np.allclose(a, b)
    with pytest.raises(ValueError, match="unknown score"):
        fitted.anomaly_map(x, score="psnr")
    with pytest.raises(ValueError, match="t_start"):
        fitted.anomaly_map(x, t_start=5000)


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
    mean2 = fitted.reconstruct(x, seed=3, n_samples=2)
    ref = (
        fitted.reconstruct(x, seed=3).astype(np.float64)
        + fitted.reconstruct(x, seed=3 + SAMPLE_SEED_STRIDE)
    ) / 2
    np.testing.assert_allclose(mean2, ref, atol=1e-6)
    m = fitted.anomaly_map(x, score="l1", seed=3, n_samples=2)
    np.testing.assert_allclose(m, np.abs(x - mean2), atol=1e-6)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.reconstruct(x, n_samples=0)
