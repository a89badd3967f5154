"""Anomaly maps from an image and its reconstruction: L1, SSIM-k and SSIM-ens.

SSIM follows ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=σ,
use_sample_covariance=False)``: a Gaussian window truncated at 3.5σ (kernel size
k = 2·int(3.5σ + 0.5) + 1), half-sample symmetric ("reflect") borders, K1 = 0.01,
K2 = 0.03. The tests check it against skimage and against scipy.ndimage. SSIM-ens (Behrendt
et al., 2024) combines A_k = 1 − SSIM_k over σ ∈ {0.3, 0.5, …, 1.7} by a per-pixel soft
maximum A = Σ_k softmax_k(A_k)·A_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

SSIM_ENS_SIGMAS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7)
SCORES: tuple[str, ...] = ("l1", "ssim", "ssim-ens", "ssim-ens-mean")
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


def _check_pair(x: Any, rec: Any) -> tuple[torch.Tensor, torch.Tensor]:
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
    xt, rt = _check_pair(x, rec)
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


def l1_score(x: Any, rec: Any, mean_filter: bool = False) -> np.ndarray:
    """|X − D(X)| averaged over channels; optionally |K ∗ (X − D(X))| with K a 3×3 mean.

    The filter uses zero padding and divides by 9 everywhere, as in the DAL-Test selection
    event E = |K ∗ (D(X) − X)|.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W).
    """
    xt, rt = _check_pair(x, rec)
    diff = xt - rt
    if mean_filter:
        diff = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=True)
    return diff.abs().mean(dim=1).numpy().astype(np.float32)


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


def ssim_ens_score(
    x: Any,
    rec: Any,
    sigmas: Sequence[float] = SSIM_ENS_SIGMAS,
    reduction: str = "softmax",
    data_range: float = 1.0,
) -> np.ndarray:
    """SSIM-ens: per-pixel soft maximum (or mean) of A_σ = 1 − SSIM_σ over scales.

    Parameters
    ----------
    sigmas : sequence of float
        Window σ values (default 0.3, 0.5, …, 1.7: windows 3, 5, 5, 7, 9, 11, 11, 13).
    reduction : {"softmax", "mean"}
        ``"softmax"``: A = Σ_k softmax_k(A_k)·A_k per pixel (published SSIM-ens);
        ``"mean"``: the plain average over scales.
    data_range : float
        Dynamic range of the images.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W).
    """
    if len(sigmas) == 0:
        raise ValueError("need at least one sigma")
    if reduction not in ("softmax", "mean"):
        raise ValueError(f"reduction must be 'softmax' or 'mean', got {reduction!r}")
    xt, rt = _check_pair(x, rec)
    maps = torch.stack(
        [(1.0 - ssim_map(xt, rt, sigma=s, data_range=data_range)).mean(dim=1) for s in sigmas]
    )
    if reduction == "mean":
        out = maps.mean(dim=0)
    else:
        out = (torch.softmax(maps, dim=0) * maps).sum(dim=0)
    return out.numpy().astype(np.float32)


def anomaly_score(x: Any, rec: Any, score: str = "ssim-ens", **kwargs: Any) -> np.ndarray:
    """Anomaly map by name.

    Parameters
    ----------
    x, rec : array-like
        Images and reconstructions, (N, C, H, W) or (N, H, W).
    score : {"l1", "ssim", "ssim-ens", "ssim-ens-mean"}
        Which map; ``"ssim-ens-mean"`` is SSIM-ens with ``reduction="mean"``.
    **kwargs
        Passed on: ``mean_filter`` (l1); ``sigma``, ``kernel_size``, ``data_range`` (ssim);
        ``sigmas``, ``reduction``, ``data_range`` (ssim-ens).

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W), higher = more anomalous.
    """
    try:
        if score == "l1":
            return l1_score(x, rec, **kwargs)
        if score == "ssim":
            return ssim_score(x, rec, **kwargs)
        if score == "ssim-ens":
            return ssim_ens_score(x, rec, **kwargs)
        if score == "ssim-ens-mean":
            return ssim_ens_score(x, rec, reduction="mean", **kwargs)
    except TypeError as err:  # unknown keyword for this score
        raise ValueError(f"bad option for score {score!r}: {err}") from err
    raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
