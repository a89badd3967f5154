"""Comparator p-values for a selected region: naive, Bonferroni and permutation.

* naive: 2Φ(−|z|), ignoring that the region was chosen from the same data (invalid).
* Bonferroni: the region is one of the 2^n subsets of n pixels, so p = min(1, 2^n · naive)
  (valid, and hopelessly conservative beyond a handful of pixels).
* permutation (selection-aware): each permutation swaps every pixel i between the test image
  X and the reference X′ with probability 1/2 (independently), re-runs the *whole*
  procedure on the swapped pair — reconstruction, selection M*, statistic z* — and compares
  |z*| with |z_obs|; p = (1 + #{|z*| >= |z_obs|}) / (B + 1). An empty M* counts as z* = 0.
  The exact null it tests: the joint law of (X, X′) is invariant under swapping any set of
  pixels between the two images — true when X and X′ are independent with the same
  distribution and independent pixels (the i.i.d. null of the validity benchmark); it does
  not hold for spatially correlated noise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from diffad.selective.truncnorm import log_naive_p_value, naive_p_value


def bonferroni_p_value(z: float, n_pixels: int) -> float:
    """min(1, 2^n · 2Φ(−|z|)), computed in log space (no overflow for large n)."""
    if n_pixels < 0:
        raise ValueError(f"n_pixels must be >= 0, got {n_pixels}")
    return float(np.exp(min(0.0, n_pixels * np.log(2.0) + log_naive_p_value(z))))


def permutation_p_value(
    image: np.ndarray,
    reference: np.ndarray,
    z_of_pair: Callable[[np.ndarray, np.ndarray], np.ndarray],
    z_obs: float,
    n_permutations: int = 1000,
    random_state: int = 0,
    chunk: int = 100,
) -> float:
    """Selection-aware pixel-swap permutation p-value (see the module docstring).

    Parameters
    ----------
    image, reference : numpy.ndarray
        The observed pair, same shape.
    z_of_pair : callable
        ``z_of_pair(images, references)`` for batches (B, ...) returns the standardised
        statistic of each pair after re-running the selection (0 when nothing is selected).
    z_obs : float
        The observed statistic.
    n_permutations : int
        B.
    random_state : int
        Seed of the swaps.
    chunk : int
        Pairs per call of ``z_of_pair``.
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    rng = np.random.default_rng(random_state)
    exceed = 0
    done = 0
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        swap = rng.random((b, *image.shape)) < 0.5
        x = np.where(swap, reference[None], image[None])
        y = np.where(swap, image[None], reference[None])
        z = np.asarray(z_of_pair(x, y), dtype=np.float64)
        exceed += int(np.count_nonzero(np.abs(z) >= abs(z_obs) - 1e-12))
        done += b
    return (1.0 + exceed) / (n_permutations + 1.0)


__all__ = ["bonferroni_p_value", "naive_p_value", "permutation_p_value"]
