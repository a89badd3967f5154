"""Is the noise model right about region means? Checked on healthy images, before any test.

A region test standardises a region's mean by the spread Σ predicts for it, so Σ must be right
about exactly that. On healthy residuals (image minus reference) that were not used to estimate
Σ, the standardised mean over a fixed region D (no selection involved),

    m = mean_D(X − X′) / sqrt((1 + f)·1_Dᵀ Σ 1_D) · |D|,

has variance 1 when the model holds. :func:`region_mean_check` measures that variance over
discs of several radii placed on a grid, with a 95 % interval, and says whether it fits.
A variance well above 1 means Σ understates how region means vary: any p-value built on it
comes out too small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import chi2

from diffad.selective.covariance import NoiseCovariance

#: Disc radii (pixels) of the check.
CHECK_RADII = (1.0, 2.0, 4.0)
#: A variance inside this range counts as a fit (the interval must also reach it).
FIT_RANGE = (0.67, 1.5)


@dataclass(frozen=True)
class RegionMeanCheck:
    """Variance of standardised fixed-region means per disc radius.

    Attributes
    ----------
    radii : list of float
        Disc radii (those for which a disc fits in the image and the foreground).
    n_values : list of int
        Standardised means per radius (discs × images).
    variance : list of float
        Mean of their squares (1 under the model).
    band : list of [float, float]
        95 % chi-square interval of each variance, treating the values as independent (discs
        of one image overlap, so the true interval is wider).
    fits : bool
        Whether every variance lies within ``FIT_RANGE`` or its band reaches 1.
    """

    radii: list[float]
    n_values: list[int]
    variance: list[float]
    band: list[list[float]]
    fits: bool

    def message(self) -> str:
        """One line for the user."""
        parts = ", ".join(
            f"r = {r:g}: {v:.2f} [{lo:.2f}, {hi:.2f}]"
            for r, v, (lo, hi) in zip(self.radii, self.variance, self.band, strict=True)
        )
        verdict = (
            "the noise model fits"
            if self.fits
            else "the noise model MISREPRESENTS region means: do not trust Gaussian-null "
            "p-values (rank and the conformal or scaled nulls do not rely on it)"
        )
        head = "noise-model check, variance of standardised region means (1 if right)"
        return f"{head}: {parts}: {verdict}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def disc_masks(
    shape: tuple[int, int, int], radius: float, foreground: np.ndarray | None = None
) -> np.ndarray:
    """Discs of ``radius`` centred on a grid of step 2·radius + 1 (bool (k, C·H·W)); with a
    ``foreground`` (H, W) mask, only discs wholly inside it."""
    c, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    step = int(2 * radius + 1)
    masks = []
    for cy in range(int(radius), h - int(radius), step):
        for cx in range(int(radius), w - int(radius), step):
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
            if foreground is not None and not np.all(foreground[disc]):
                continue
            masks.append(np.broadcast_to(disc, (c, h, w)).reshape(-1))
    return np.array(masks, dtype=bool).reshape(len(masks), c * h * w)


def region_mean_check(
    residuals: Any,
    noise_var: Any,
    reference_var_factor: float = 0.0,
    radii: tuple[float, ...] = CHECK_RADII,
    foreground: np.ndarray | None = None,
) -> RegionMeanCheck:
    """Variance of standardised means over fixed discs of healthy residuals.

    Parameters
    ----------
    residuals : array-like
        (N, C, H, W) healthy images minus their references (and the offset), from images
        the noise model was not estimated on.
    noise_var : float, array or matrix
        Σ, as ``SelectiveTest`` takes it.
    reference_var_factor : float
        f: the reference's noise is f·Σ (0 when Σ is the residuals' own covariance).
    radii : tuple of float
        Disc radii.
    foreground : numpy.ndarray, optional
        (H, W) bool: only discs inside it (e.g. the brain).

    Returns
    -------
    RegionMeanCheck
    """
    r = np.asarray(residuals, dtype=np.float64)
    shape = r.shape[1:]
    cov = NoiseCovariance(noise_var, int(np.prod(shape)), shape)
    flat = r.reshape(len(r), -1)
    variance, band, counts, used = [], [], [], []
    for radius in radii:
        masks = disc_masks(shape, radius, foreground).astype(np.float64)
        if len(masks) == 0:  # no disc of this size fits: left out
            continue
        used.append(float(radius))
        sizes = masks.sum(axis=1)
        sd = np.array([cov.mean_sd(m, reference_var_factor) for m in masks])
        z = (flat @ masks.T) / sizes / sd  # (N, k)
        n = z.size
        v = float(np.mean(z**2))
        variance.append(v)
        band.append([v * n / chi2.ppf(0.975, n), v * n / chi2.ppf(0.025, n)])
        counts.append(int(n))
    lo_fit, hi_fit = FIT_RANGE
    fits = all(
        (lo_fit <= v <= hi_fit) or (lo <= 1.0 <= hi)
        for v, (lo, hi) in zip(variance, band, strict=True)
    )
    return RegionMeanCheck(used, counts, variance, band, bool(fits))
