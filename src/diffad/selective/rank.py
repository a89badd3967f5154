"""The rank test: the most extreme flagged component of an image, ranked among healthy images.

The localiser's region map E (or, with ``SelectiveTest(selection="shown")``, the map it shows)
is thresholded at a low level λ_rank (by default the 90th
percentile of healthy map pixels, so that every image has a few candidate regions). Each
connected component C of {E > λ_rank} gets the standardised mean of the image's residual
against its reference,

    z_C = (mean_C X − mean_C X′) / sd,    sd² = (1 + f)·1_Cᵀ Σ 1_C / |C|²,

and the image's statistic is S = max_C |z_C| (S = 0 when no pixel passes λ_rank). The tested
region is the component that attains the maximum. With S_1, …, S_m the statistic on m healthy
images the test never saw (no region: 0),

    p = (1 + #{j : S_j ≥ S}) / (m + 1)

is a conformal p-value: whenever the tested image and the healthy ones are exchangeable (a
healthy image of the same kind, with its reference drawn the same way), P(p ≤ α) ≤ α exactly in
finite samples, whatever the network, Σ or the distribution of the residuals. It controls how
often a healthy image gets a region rejected; it is not conditional on the exact pixel set (that
is the DAL-Test's guarantee), which is what lets it keep its power
(docs/benchmarks/region_power.md, where λ_rank's percentile was chosen). Σ only standardises
regions of different sizes: a wrong Σ costs power, never validity. The smallest p-value is
1/(m + 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from diffad.selective.covariance import NoiseCovariance

#: Default percentile of healthy region-map pixels that becomes λ_rank.
RANK_PERCENTILE = 90.0


class RankStatistic(NamedTuple):
    """The most extreme component: its signed z (S = |z|), mean difference and region."""

    z: float
    stat: float
    region: np.ndarray


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a (C, H, W) mask: pixels touching along a row or a column
    (4-connectivity), and the same pixel in adjacent channels."""
    labels, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 1))
    return labels, int(n)


def rank_statistic(
    selection_map: np.ndarray,
    lam: float,
    image: np.ndarray,
    reference: np.ndarray,
    cov: NoiseCovariance,
    reference_var_factor: float,
) -> RankStatistic | None:
    """The component of ``selection_map > lam`` with the largest |z| (None: no component).

    Parameters
    ----------
    selection_map : numpy.ndarray
        The region map E of the image, (C, H, W) or flat.
    lam : float
        λ_rank.
    image, reference : numpy.ndarray
        (C, H, W) image and its reference (with any healthy offset added).
    cov : NoiseCovariance
        Σ.
    reference_var_factor : float
        f, the reference's covariance relative to Σ.
    """
    shape = np.shape(image)
    labels, n = components(np.asarray(selection_map).reshape(shape) > lam)
    if n == 0:
        return None
    flat = labels.reshape(-1)
    residual = (np.asarray(image, np.float64) - np.asarray(reference, np.float64)).reshape(-1)
    best: RankStatistic | None = None
    for k in range(1, n + 1):
        region = flat == k
        stat = float(residual[region].mean())
        z = stat / cov.mean_sd(region, reference_var_factor)
        if best is None or abs(z) > abs(best.z):
            best = RankStatistic(z, stat, region.reshape(shape))
    return best


def rank_p_value(statistic: float, null_statistics: np.ndarray) -> float:
    """(1 + #{S_j ≥ S}) / (m + 1) over the m healthy statistics (0 where no region).

    Raises
    ------
    ValueError
        Without healthy statistics, or with NaN among them.
    """
    null = np.asarray(null_statistics, dtype=np.float64)
    if null.size == 0:
        raise ValueError(
            "the rank test needs healthy null images: calibrate() with null_fraction > 0"
        )
    if not np.all(np.isfinite(null)):
        raise ValueError("healthy rank statistics must be finite (0 for an image with no region)")
    return float((1 + np.sum(np.abs(null) >= abs(statistic))) / (null.size + 1))
