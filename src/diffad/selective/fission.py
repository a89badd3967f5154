"""Data fission for region tests, and the nulls a region statistic can be calibrated against.

**Data fission** (Leiner, Duan, Wasserman & Ramdas, JASA 2023; Rasines & Young 2022): with
X ~ N(μ, Σ) and an independent draw Z ~ N(0, Σ), the two images

    f(X) = X + τ·Z    and    g(X) = X − Z/τ

are independent, with covariances (1 + τ²)Σ and (1 + τ⁻²)Σ. The region is selected on f(X)
and its mean is tested on g(X): z = (mean_M g(X) − mean_M X′) / sd, sd² = (1 + τ⁻² + f)·1ᵀΣ1/|M|²,
is N(0, 1) under H0: mean_M(μ) = mean_M(μ′) whatever M, with no search and no conditioning
on the exact pixel set. τ trades the two: a small τ selects on a nearly clean image and tests
on a noisy one. Z is drawn from a generator seeded by the test's seed and the image's bytes, so
the same image (as float32 pixels) always gets the same p-value while Z stays independent of X
in distribution.

**Nulls** for a statistic z computed the same way on healthy images the test never saw:

- ``"gaussian"``: p = 2Φ(−|z|), exact when the Gaussian model with the estimated Σ holds;
- ``"scaled"``: z/s with s² the mean of z² over the n healthy images, p from Student's t with n
  degrees of freedom — exact when the healthy z are N(0, σ²) with σ unknown (an empirical
  null scale, after Efron 2004);
- ``"conformal"``: p = (1 + #{healthy |z| ≥ |z_obs|}) / (m + 1) over the m healthy images
  that had a region — exact in finite samples, given that a region was selected, whenever the
  tested image and the healthy ones are exchangeable (a healthy image of the same kind), with
  no model at all; its smallest value is 1/(m + 1).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from scipy.stats import norm, t

from diffad.selective.covariance import NoiseCovariance

#: Null distributions of a region statistic (see the module docstring).
NULLS = ("gaussian", "scaled", "conformal")


def fission_noise(cov: NoiseCovariance, image: np.ndarray, seed: int) -> np.ndarray:
    """Z ~ N(0, Σ) for ``image``, from a generator seeded by ``seed`` and the image's bytes."""
    # Hashed as float32, the precision images are stored and localised in: the same picture
    # gets the same Z whichever path (float32 or float64) brought it here.
    digest = hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return cov.sample(np.random.default_rng([int(seed), *words])).reshape(np.shape(image))


def fission_pair(
    image: np.ndarray, cov: NoiseCovariance, tau: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(f(X), g(X)) = (X + τZ, X − Z/τ) for one image (C, H, W)."""
    z = fission_noise(cov, image, seed)
    return image + tau * z, image - z / tau


def null_p_value(z: float | None, null: str, null_z: np.ndarray | None) -> float | None:
    """Two-sided p-value of ``z`` under ``null``.

    Parameters
    ----------
    z : float or None
        The tested image's statistic (None: no region, no p-value).
    null : {"gaussian", "scaled", "conformal"}
        See the module docstring.
    null_z : numpy.ndarray or None
        The statistic on healthy images (NaN where no region was selected); needed for
        ``"scaled"`` and ``"conformal"``.

    Raises
    ------
    ValueError
        An unknown null, or a null that needs healthy statistics without them.
    """
    if null not in NULLS:
        raise ValueError(f"null must be one of {NULLS}, got {null!r}")
    if z is None:
        return None
    if null == "gaussian":
        return float(2 * norm.sf(abs(z)))
    if null_z is None or len(null_z) == 0:
        raise ValueError(f"null={null!r} needs healthy null statistics: calibrate() the test")
    values = np.asarray(null_z, dtype=np.float64)
    finite = values[np.isfinite(values)]  # the healthy images that had a region
    if len(finite) < (1 if null == "conformal" else 2):
        raise ValueError(f"null={null!r} needs more healthy null images with a region")
    if null == "conformal":
        return float((1 + np.sum(np.abs(finite) >= abs(z))) / (len(finite) + 1))
    return float(2 * t.sf(abs(z) / null_scale(finite), df=len(finite)))


def null_scale(null_z: Any) -> float | None:
    """sqrt(mean z²) over the healthy statistics that exist (1 if the Gaussian model holds)."""
    values = np.asarray(null_z, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(finite**2))) if len(finite) else None
