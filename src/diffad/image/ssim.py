"""SSIM maps with a Gaussian window, matching scikit-image.

SSIM follows ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=σ,
use_sample_covariance=False)``: a Gaussian window truncated at 3.5σ (kernel size
k = 2·int(3.5σ + 0.5) + 1), half-sample symmetric ("reflect") borders, K1 = 0.01,
K2 = 0.03. The tests check it against skimage and against scipy.ndimage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

TRUNCATE = 3.5


def kernel_size(sigma: float, truncate: float = TRUNCATE) -> int:
    """Gaussian window size k = 2·int(truncate·σ + 0.5) + 1 (σ = 1.5 → 11)."""
    return 2 * int(truncate * float(sigma) + 0.5) + 1


def sigma_for_kernel_size(k: int) -> float:
    """The σ whose 3.5σ-truncated window has exactly ``k`` taps: σ = (k − 1) / 7."""
    if k < 3 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {k}")
    return (k - 1) / (2 * TRUNCATE)


def _to_tensor(a: Any) -> torch.Tensor:
    """(N, C, H, W) or (N, H, W) input as a float64 (N, C, H, W) tensor."""
    t = a.detach() if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    t = t.to(torch.float64)
    if t.ndim == 3:
        t = t[:, None]
    if t.ndim != 4:
        raise ValueError(
            f"expected images of shape (N, H, W) or (N, C, H, W), got {tuple(t.shape)}"
        )
    return t


def check_pair(x: Any, rec: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and reconstructions as float64 (N, C, H, W) tensors of one shape.

    Raises
    ------
    ValueError
        Shapes differ, empty input, or NaN/inf values.
    """
    xt, rt = _to_tensor(x), _to_tensor(rec)
    if xt.shape != rt.shape:
        raise ValueError(
            f"image and reconstruction shapes differ: {tuple(xt.shape)} vs {tuple(rt.shape)}"
        )
    if xt.numel() == 0:
        raise ValueError("empty images")
    if not (torch.isfinite(xt).all() and torch.isfinite(rt).all()):
        raise ValueError("images or reconstructions contain NaN or infinite values")
    return xt, rt.to(xt.device)


def _reflect_index(n: int, r: int, device: torch.device) -> torch.Tensor:
    """Indices of a half-sample symmetric extension by ``r`` (scipy's mode='reflect')."""
    idx = torch.arange(-r, n + r, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_filter(x: torch.Tensor, sigma: float, truncate: float = TRUNCATE) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with scipy's 'reflect' borders.

    Parameters
    ----------
    x : torch.Tensor
        Images (N, C, H, W).
    sigma : float
        Standard deviation in pixels (> 0).
    truncate : float
        Window radius int(truncate·σ + 0.5), as in scipy.ndimage.gaussian_filter.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r = int(truncate * float(sigma) + 0.5)
    taps = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-0.5 * (taps / sigma) ** 2)
    w = w / w.sum()
    n, c, h, wd = x.shape
    y = x.reshape(n * c, 1, h, wd)
    y = y.index_select(2, _reflect_index(h, r, x.device))
    y = F.conv2d(y, w.view(1, 1, -1, 1))
    y = y.index_select(3, _reflect_index(wd, r, x.device))
    y = F.conv2d(y, w.view(1, 1, 1, -1))
    return y.reshape(n, c, h, wd)


def ssim_map(
    x: Any,
    rec: Any,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel SSIM with a Gaussian window (population covariances, as in skimage).

    Parameters
    ----------
    x, rec : array-like or torch.Tensor
        Images (N, C, H, W) or (N, H, W).
    sigma : float
        Window σ in pixels.
    data_range : float
        Dynamic range L of the images (C1 = (k1·L)², C2 = (k2·L)²).
    k1, k2 : float
        SSIM stabilising constants.

    Returns
    -------
    torch.Tensor
        Float64 (N, C, H, W) SSIM values in [-1, 1].
    """
    xt, rt = check_pair(x, rec)
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # Blur the five moment images in one call: x, y, x², y², xy.
    stack = torch.cat([xt, rt, xt * xt, rt * rt, xt * rt], dim=1)
    m = gaussian_filter(stack, sigma)
    ux, uy, uxx, uyy, uxy = m.chunk(5, dim=1)
    vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
    num = (2 * ux * uy + c1) * (2 * vxy + c2)
    den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
    return num / den


def ssim_score(
    x: Any,
    rec: Any,
    sigma: float = 1.5,
    kernel_size: int | None = None,
    data_range: float = 1.0,
) -> np.ndarray:
    """1 − SSIM_σ(X, D(X)), averaged over channels.

    Parameters
    ----------
    sigma : float
        Window σ (1.5 → 11×11 window).
    kernel_size : int, optional
        Window size k instead of σ; uses σ = (k − 1)/7 so that the window has k taps.
    data_range : float
        Dynamic range of the images.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W) in [0, 2].
    """
    if kernel_size is not None:
        sigma = sigma_for_kernel_size(int(kernel_size))
    s = ssim_map(x, rec, sigma=sigma, data_range=data_range)
    return (1.0 - s).mean(dim=1).numpy().astype(np.float32)
