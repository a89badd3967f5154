"""The tile test: an exact selective test of fixed tiles, conditioned on a coarse event.

The image is cut into a fixed grid of square tiles of ``size`` pixels (all channels). A tile T
is a *candidate* when at least one of its pixels passes λ on the region map. For each
candidate, H0_T: mean_T(μ) = mean_T(μ′) is tested with z_T = (mean_T X − mean_T X′) / sd,
conditioned only on the event "T is a candidate" (and on the nuisance component, as in the
DAL-Test): along the line X(z) = a + b·z the event holds on a union of intervals that the
parametric search finds with the existing tracer, and p_T is the truncated-normal p-value on
it. The event is far coarser than "the selection is exactly this pixel set", so its truncation
set is wide and the p-value keeps its power where the DAL-Test's does not.

The image's p-value is Bonferroni over the grid, p = min(1, n_tiles · min_T p_T): for a
healthy image (every H0_T true), P(p ≤ α) ≤ Σ_T P(T candidate, p_T ≤ α / n_tiles) ≤ α under the
Gaussian model with the given Σ. The tile with the smallest p_T is the region reported.
"""

from __future__ import annotations

import numpy as np


def tile_grid(shape: tuple[int, int, int], size: int) -> list[np.ndarray]:
    """Flat (C·H·W,) bool masks of the ``size`` × ``size`` tiles of a (C, H, W) image, row by
    row (the last row and column of tiles are smaller when ``size`` does not divide H or W).

    Raises
    ------
    ValueError
        For a size below 1.
    """
    if int(size) < 1:
        raise ValueError(f"tile_size must be >= 1, got {size}")
    c, h, w = shape
    tiles = []
    for top in range(0, h, size):
        for left in range(0, w, size):
            mask = np.zeros((c, h, w), dtype=bool)
            mask[:, top : top + size, left : left + size] = True
            tiles.append(mask.reshape(-1))
    return tiles


class TileSelected:
    """The event "at least one pixel of the tile is selected", as
    :func:`~diffad.selective.intervals.event_holds` reads it."""

    def __init__(self, tile: np.ndarray) -> None:
        self.tile = np.asarray(tile, dtype=bool).reshape(-1)

    def __call__(self, selected: np.ndarray) -> np.ndarray:
        """(k,) bool: which of the (k, n) selections hold the event."""
        return np.asarray(selected)[:, self.tile].any(axis=1)
