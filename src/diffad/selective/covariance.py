"""The known noise covariance Σ of the DAL-Test model X = μ + ε, ε ~ N(0, Σ)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NoiseCovariance:
    """The noise covariance Σ of an image: a scalar variance, per-pixel variances or a
    full matrix. Only products Σ·v are needed.

    Parameters
    ----------
    noise_var : float or array-like
        Scalar variance (Σ = noise_var·I), per-pixel variances (image-shaped or flat), or
        an (n, n) covariance matrix over the n = C·H·W pixels.
    n : int
        Number of pixels C·H·W.
    shape : tuple of int
        The image shape, for per-pixel variances given image-shaped.

    Raises
    ------
    ValueError
        For NaN/inf, non-positive variances, a non-symmetric or non-positive-definite
        matrix, or a shape that fits none of the three forms.
    """

    def __init__(self, noise_var: Any, n: int, shape: tuple[int, ...]) -> None:
        arr = np.asarray(noise_var, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("noise_var contains NaN or inf")
        if arr.ndim == 0 or arr.size == 1 and arr.ndim <= 1:
            if not arr.reshape(()) > 0:
                raise ValueError(f"a scalar noise_var must be > 0, got {float(arr)}")
            self.kind, self.value = "scalar", float(arr.reshape(()))
            self._n = int(n)
        elif arr.shape == (n,) or (arr.size == n and arr.shape == shape[len(shape) - arr.ndim :]):
            if np.any(arr <= 0):
                raise ValueError("per-pixel variances must all be > 0")
            self.kind, self.value = "diagonal", arr.reshape(-1)
        elif arr.shape == (n, n):
            if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12):
                raise ValueError("the covariance matrix noise_var must be symmetric")
            try:
                np.linalg.cholesky(arr)
            except np.linalg.LinAlgError as err:
                raise ValueError(
                    "the covariance matrix noise_var is not positive definite"
                ) from err
            self.kind, self.value = "full", arr
        else:
            raise ValueError(
                f"noise_var must be a scalar variance, per-pixel variances of shape {shape} or "
                f"({n},), or an ({n}, {n}) covariance matrix; got shape {arr.shape}"
            )

    def times(self, v: np.ndarray) -> np.ndarray:
        """Σ·v."""
        if self.kind == "full":
            return self.value @ v
        return self.value * v  # scalar or per-pixel variances

    def mean_sd(self, mask: np.ndarray, factor: float = 0.0) -> float:
        """sd of mean_M(X) − mean_M(X′) over a region ``mask`` (flat bool or 0/1), X′ with
        covariance ``factor``·Σ: sqrt((1 + factor)·1_Mᵀ Σ 1_M) / |M|."""
        ones = np.asarray(mask, dtype=np.float64).reshape(-1)
        return float(np.sqrt((1.0 + factor) * (ones @ self.times(ones)))) / float(ones.sum())

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of N(0, Σ), flat (n,)."""
        if self.kind == "full":
            if getattr(self, "_chol", None) is None:
                self._chol = np.linalg.cholesky(self.value)
            return self._chol @ rng.standard_normal(len(self.value))
        n = self.value.size if self.kind == "diagonal" else self._n
        return np.sqrt(self.value) * rng.standard_normal(n)
