"""Anomaly scores against independent oracles (skimage, scipy.ndimage) and by definition."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from diffad.image.scores import anomaly_score, l1_score
from diffad.image.ssim import (
    gaussian_filter,
    kernel_size,
    sigma_for_kernel_size,
    ssim_map,
    ssim_score,
)
from diffad.image.ssim_ens import SSIM_ENS_SIGMAS, ssim_ens_score


def _pair(shape=(3, 1, 16, 14), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(shape)
    return x, np.clip(x + 0.15 * rng.standard_normal(shape), 0, 1)


def _scipy_ssim(a, b, sigma, data_range=1.0):
    """SSIM map written with scipy.ndimage.gaussian_filter (mode='reflect', truncate=3.5)."""
    f = lambda v: ndimage.gaussian_filter(v, sigma, truncate=3.5, mode="reflect")  # noqa: E731
    ux, uy = f(a), f(b)
    vx, vy, vxy = f(a * a) - ux * ux, f(b * b) - uy * uy, f(a * b) - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def test_kernel_sizes_are_the_published_ones():
    assert [kernel_size(s) for s in SSIM_ENS_SIGMAS] == [3, 5, 5, 7, 9, 11, 11, 13]
    for k in (3, 5, 7, 11, 13):
        assert kernel_size(sigma_for_kernel_size(k)) == k
    with pytest.raises(ValueError):
        sigma_for_kernel_size(4)


@pytest.mark.parametrize("sigma", [0.3, 0.7, 1.5, 1.7])
def test_gaussian_filter_matches_scipy(sigma):
    x = np.random.default_rng(1).random((2, 3, 9, 15))
    ours = gaussian_filter(torch.from_numpy(x), sigma).numpy()
    ref = np.stack(
        [[ndimage.gaussian_filter(c, sigma, truncate=3.5, mode="reflect") for c in im] for im in x]
    )
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("sigma", SSIM_ENS_SIGMAS)
def test_ssim_map_matches_scipy_oracle(sigma):
    x, y = _pair()
    ours = ssim_map(x, y, sigma=sigma).numpy()
    for i in range(len(x)):
        np.testing.assert_allclose(ours[i, 0], _scipy_ssim(x[i, 0], y[i, 0], sigma), atol=1e-10)


@pytest.mark.parametrize("sigma", [0.3, 0.9, 1.5, 1.7])
@pytest.mark.parametrize("data_range", [1.0, 2.5])
def test_ssim_map_matches_skimage(sigma, data_range):
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _pair((2, 1, 16, 16), seed=2)
    x, y = x * data_range, y * data_range
    ours = ssim_map(x, y, sigma=sigma, data_range=data_range).numpy()
    for i in range(len(x)):
        _, ref = metrics.structural_similarity(
            x[i, 0],
            y[i, 0],
            gaussian_weights=True,
            sigma=sigma,
            use_sample_covariance=False,
            data_range=data_range,
            full=True,
        )
        np.testing.assert_allclose(ours[i, 0], ref, atol=1e-10)


def test_ssim_identity_and_channels():
    x, y = _pair((2, 3, 12, 12))
    assert np.allclose(ssim_score(x, x), 0.0, atol=1e-12)
    per_channel = [ssim_score(x[:, c], y[:, c]) for c in range(3)]
    np.testing.assert_allclose(ssim_score(x, y), np.mean(per_channel, axis=0), atol=1e-6)
    np.testing.assert_allclose(
        ssim_score(x, y, kernel_size=11), ssim_score(x, y, sigma=10 / 7), atol=1e-7
    )


def test_l1_and_mean_filter():
    x, y = _pair((2, 1, 10, 10))
    np.testing.assert_allclose(l1_score(x, y), np.abs(x - y)[:, 0], atol=1e-6)
    # Zero-padded 3×3 mean of the signed difference, then |·| (the DAL-Test event).
    ref = np.abs(ndimage.uniform_filter((x - y)[:, 0], size=(1, 3, 3), mode="constant"))
    np.testing.assert_allclose(l1_score(x, y, mean_filter=True), ref, atol=1e-6)


def test_ssim_ens_softmax_and_mean_by_definition():
    x, y = _pair((2, 1, 16, 16), seed=3)
    maps = np.stack([ssim_score(x, y, sigma=s).astype(np.float64) for s in SSIM_ENS_SIGMAS])
    w = np.exp(maps) / np.exp(maps).sum(axis=0)
    np.testing.assert_allclose(ssim_ens_score(x, y), (w * maps).sum(axis=0), atol=1e-6)
    np.testing.assert_allclose(anomaly_score(x, y, "ssim-ens-mean"), maps.mean(axis=0), atol=1e-6)
    # A soft maximum lies between the mean and the maximum over scales.
    ens = ssim_ens_score(x, y)
    assert np.all(ens >= maps.mean(axis=0) - 1e-6) and np.all(ens <= maps.max(axis=0) + 1e-6)


def test_score_errors():
    x, y = _pair((1, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown score"):
        anomaly_score(x, y, "mse")
    with pytest.raises(ValueError, match="differ"):
        anomaly_score(x, y[:, :, :4], "l1")
    bad = y.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        anomaly_score(x, bad, "ssim")
    with pytest.raises(ValueError, match="bad option"):
        anomaly_score(x, y, "l1", sigma=2.0)
    with pytest.raises(ValueError, match="reduction"):
        ssim_ens_score(x, y, reduction="max")
