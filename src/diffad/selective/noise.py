"""The noise model of DAL-Test estimated from healthy images: reference and noise variance.

DAL-Test models an image as X = μ + ε with ε ~ N(0, Σ) and compares it with a reference
X′ = μ′ + ε′. For images of healthy tissue this module estimates, from healthy images
that the tested images are not among:

- the **reference**: their mean image; being a mean of n independent healthy images, its
  noise covariance is Σ/n (``reference_var_factor`` = 1/n), which the test accounts for;
- the **noise covariance** Σ: the spread of healthy images around that mean, as
  ``"scalar"`` (one variance, Σ = σ²·I), ``"pixel"`` (one variance per pixel, Σ diagonal),
  ``"full"`` (every pixel pair; scikit-learn's Ledoit-Wolf shrinkage, which keeps the
  matrix positive definite when there are fewer images than pixels), ``"local"`` (the
  Ledoit-Wolf matrix tapered to zero beyond ``TAPER_RADIUS`` pixels) or ``"tapered"`` (the
  sample covariance tapered to zero beyond ``SAMPLE_TAPER_RADIUS`` pixels, the default).

With **paired references** (one healthy reference per image, e.g. the same-position slice of
a registered healthy brain) the noise is that of the residual X − X′ instead: the reference
becomes the mean residual (an offset map added to each image's own reference) and Σ the
covariance of the residuals around it; the reference's own noise is then part of Σ
(``reference_var_factor`` = 0).

Real pixels are correlated in space; with ``"scalar"`` or ``"pixel"`` the variance of a
region's mean is then underestimated and the p-values come out too small. The tapered forms
keep the correlation of neighbouring pixels only, by a Schur product with the compactly
supported Wendland function (1 − d/r)⁴(1 + 4d/r), which is positive definite in the plane, so
the tapered matrix stays positive definite (covariance tapering, Furrer, Genton & Nychka
2006); the line the region test traces then moves only the pixels near the region. Ledoit-Wolf
shrinks toward a scaled identity, which removes exactly the spatial correlation a region mean
depends on: on brain MRI its standardised region means had variance 1.9–2.9 instead of 1,
the tapered sample covariance about 1 (``benchmarks/region_power.py``). Whether the model fits
is measured on every calibration: :func:`diffad.selective.noise_check.region_mean_check` and
the healthy calibration check of :func:`healthy_rejection_rate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

NOISE_KINDS = ("scalar", "pixel", "full", "local", "tapered", "auto")
#: ``kind="auto"`` estimates the tapered covariance up to this many pixels (a 4096 × 4096
#: float64 matrix is 128 MB), per-pixel variances above.
FULL_MAX_PIXELS = 4096
#: Support of the taper of ``kind="local"`` (the Ledoit-Wolf matrix), in pixels.
TAPER_RADIUS = 4.0
#: Support of the taper of ``kind="tapered"`` (the sample covariance), in pixels.
SAMPLE_TAPER_RADIUS = 8.0


def wendland_taper(height: int, width: int, channels: int, radius: float) -> np.ndarray:
    """The Wendland taper (1 − d/r)⁴₊(1 + 4d/r) of every pair of pixels.

    Parameters
    ----------
    height, width, channels : int
        Image layout (C, H, W); the channels of one pixel are at distance 0.
    radius : float
        r, the support in pixels.

    Returns
    -------
    numpy.ndarray
        (C·H·W, C·H·W) float64, in the flattened (C, H, W) order.
    """
    yy, xx = (np.tile(v.ravel().astype(np.float64), channels) for v in np.mgrid[0:height, 0:width])
    d = np.hypot(yy[:, None] - yy[None, :], xx[:, None] - xx[None, :]) / radius
    return np.where(d < 1, (1 - d) ** 4 * (1 + 4 * d), 0.0)


@dataclass(eq=False)
class NoiseModel:
    """Reference image and noise covariance estimated from healthy images.

    Attributes
    ----------
    reference : numpy.ndarray
        Mean healthy image, shape (C, H, W); with paired references, the mean residual
        (the offset added to each image's own reference).
    reference_var_factor : float
        Covariance of the reference relative to Σ: 1/n for the mean of n images; 0 with
        paired references (their noise is part of Σ).
    noise_var : float or numpy.ndarray
        Σ: a scalar variance, per-pixel variances (C, H, W), or a (C·H·W)² matrix.
    kind : str
        ``"scalar"``, ``"pixel"``, ``"full"``, ``"local"`` or ``"tapered"``.
    n_images : int
        Healthy images used.
    """

    reference: np.ndarray
    reference_var_factor: float
    noise_var: Any
    kind: str
    n_images: int


def estimate_noise_model(images: Any, kind: str = "auto", references: Any = None) -> NoiseModel:
    """Estimate the reference and Σ from healthy images (see the module docstring).

    Parameters
    ----------
    images : array-like
        Healthy images (N, C, H, W) in model layout, N >= 2.
    kind : {"auto", "tapered", "local", "full", "pixel", "scalar"}
        Form of Σ; ``"auto"`` is ``"tapered"`` up to ``FULL_MAX_PIXELS`` values (C·H·W), else
        ``"pixel"`` (which ignores spatial correlation: check the healthy calibration check).
    references : array-like, optional
        One healthy reference per image (N, C, H, W): Σ is then the covariance of the
        residuals ``images - references`` and the returned reference their mean.

    Returns
    -------
    NoiseModel

    Raises
    ------
    ValueError
        Fewer than 2 images, NaN/inf, an unknown kind, references of another shape, or images
        that do not vary at all.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 healthy images to estimate the noise, got {len(x)}")
    if references is not None:
        refs = np.asarray(references, dtype=np.float64)
        if refs.shape != x.shape:
            raise ValueError(f"references have shape {refs.shape}, the images {x.shape}")
        x = x - refs
    if not np.all(np.isfinite(x)):
        raise ValueError("healthy images contain NaN or infinite values")
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    n, shape = len(x), x.shape[1:]
    flat = x.reshape(n, -1)
    if kind == "auto":
        kind = "tapered" if flat.shape[1] <= FULL_MAX_PIXELS else "pixel"
    var = flat.var(axis=0, ddof=1)
    if not np.any(var > 0):
        raise ValueError("the healthy images are all identical: no noise to estimate")
    # Pixels that never vary (e.g. a black background) get a small floor: a variance of
    # exactly 0 would make any change there infinitely significant.
    floor = 1e-3 * float(np.median(var[var > 0]))
    if kind == "scalar":
        noise_var: Any = float(var.mean())
    elif kind == "pixel":
        noise_var = np.maximum(var, floor).reshape(shape)
    else:
        if kind == "tapered":
            cov = np.cov(flat, rowvar=False)
            radius = SAMPLE_TAPER_RADIUS
        else:
            from sklearn.covariance import LedoitWolf

            cov = LedoitWolf().fit(flat).covariance_
            radius = TAPER_RADIUS
        if kind != "full":
            cov = cov * wendland_taper(shape[-2], shape[-1], int(np.prod(shape[:-2])), radius)
        if kind == "tapered":
            # The floor keeps the Schur product positive definite where a pixel never varies.
            cov[np.diag_indices_from(cov)] = np.maximum(np.diag(cov), floor)
        ridge = 1e-9 * float(np.trace(cov)) / cov.shape[0]
        noise_var = cov + ridge * np.eye(cov.shape[0])
    factor = 0.0 if references is not None else 1.0 / n
    return NoiseModel(flat.mean(axis=0).reshape(shape), factor, noise_var, kind, n)


@dataclass(eq=False)
class CalibrationCheck:
    """Fraction of tested healthy images whose selective p-value falls below α.

    The selective test promises P(p < α | a region is selected) ≤ α, so the rate is taken
    over the healthy images that had a region; under a valid test it is at most α up to
    sampling error, which the binomial band bounds.

    Attributes
    ----------
    alpha : float
        Level.
    n_healthy : int
        Healthy images tested (those with a non-empty region).
    n_rejected : int
        Of those, how many had p < α.
    n_images : int
        Healthy images looked at, with or without a region.
    healthy_rejection_rate : float
        n_rejected / n_healthy (0 when no image had a region).
    band : tuple of float
        95 % Clopper-Pearson interval of that rate ((0, 1) when no image had a region).
    adequate : bool
        Whether α lies at or above the band's lower end (no evidence of too many rejections).
    """

    alpha: float
    n_healthy: int
    n_rejected: int
    n_images: int
    healthy_rejection_rate: float
    band: tuple[float, float]
    adequate: bool

    def message(self) -> str:
        """One line for the user."""
        lo, hi = self.band
        if self.n_healthy == 0:
            return (
                f"healthy calibration check: none of {self.n_images} held-out healthy images "
                "had a region to test; nothing to check"
            )
        verdict = (
            "consistent with a valid test"
            if self.adequate
            else "TOO MANY healthy rejections: the region test's null does not fit these "
            "images; do not trust its p-values"
        )
        return (
            f"healthy calibration check: {self.n_rejected} of {self.n_healthy} held-out healthy "
            f"images with a region rejected at alpha = {self.alpha:g} (rate "
            f"{self.healthy_rejection_rate:.3f}, 95 % band [{lo:.3f}, {hi:.3f}]; "
            f"{self.n_images - self.n_healthy} had no region): {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "alpha": self.alpha,
            "n_healthy": self.n_healthy,
            "n_images": self.n_images,
            "n_rejected": self.n_rejected,
            "healthy_rejection_rate": self.healthy_rejection_rate,
            "band": list(self.band),
            "adequate": self.adequate,
        }


def healthy_check(
    tester: Any,
    images: Any,
    alpha: float = 0.05,
    verbose: bool = False,
    cached: Callable[[int, Callable[[], Any]], Any] | None = None,
    references: Any = None,
) -> tuple[CalibrationCheck, list[float | None]]:
    """Run the region test on healthy images and summarise it with :func:`healthy_rejection_rate`.

    Parameters
    ----------
    tester : SelectiveTest
        The test to check (a copy stops as soon as p < alpha or p >= alpha is certain: only
        the decision counts here).
    images : array-like
        Healthy images the reference, noise model and λ were not estimated from (e.g. a
        calibrated test's ``check_images_``, in model layout).
    alpha : float
        Level.
    verbose : bool
        Progress bar.
    cached : callable, optional
        ``cached(k, compute)`` returns image k's test result, calling ``compute()`` only when
        it does not have it (for resumable runs, e.g. ``ResultLog.get_or_run``).
    references : array-like, optional
        One reference per image (e.g. ``check_references_``) for a test calibrated with
        paired references.

    Returns
    -------
    CalibrationCheck, list of float or None
        The check and each image's p-value (None: no region). The p-values stop at the
        decision, so they are brackets' estimates, not exact p-values.
    """
    import copy

    from tqdm.auto import tqdm

    checker = copy.copy(tester)
    checker.termination, checker.alpha = "decision", alpha

    p_values = []
    refs = [None] * len(images) if references is None else list(references)
    pairs = zip(images, refs, strict=True)
    for k, (x, r) in enumerate(
        tqdm(pairs, total=len(refs), desc="healthy calibration check", disable=not verbose)
    ):
        compute = lambda x=x, r=r: checker.test_prepared(  # noqa: E731
            np.asarray(x, dtype=np.float64), None if r is None else np.asarray(r, np.float64)
        )
        res = cached(k, compute) if cached else compute()
        p_values.append(float(res.p_value) if res.selected else None)
    return healthy_rejection_rate(p_values, alpha), p_values


def healthy_rejection_rate(p_values: list[float | None], alpha: float = 0.05) -> CalibrationCheck:
    """The calibration check from the selective p-values of held-out healthy images.

    Parameters
    ----------
    p_values : list of float or None
        One per healthy image; None where no region was selected (not tested).
    alpha : float
        Level.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not p_values:
        raise ValueError("no healthy images to check")
    tested = [p for p in p_values if p is not None]
    k, n = sum(p < alpha for p in tested), len(tested)
    if n == 0:
        return CalibrationCheck(float(alpha), 0, 0, len(p_values), 0.0, (0.0, 1.0), True)
    low, high = clopper_pearson(int(k), n)
    return CalibrationCheck(
        alpha=float(alpha),
        n_healthy=n,
        n_rejected=int(k),
        n_images=len(p_values),
        healthy_rejection_rate=k / n,
        band=(low, high),
        adequate=bool(low <= alpha),
    )


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``confidence`` interval of a rate of k in n."""
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)
