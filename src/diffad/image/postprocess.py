"""Post-processing of anomaly maps, following the SSIM-ens evaluation pipeline.

Order: multiply the map by an eroded foreground mask (reconstructions are least reliable at
the object's border), median-filter it (size 5) to remove isolated speckle, then — when a
binary segmentation is wanted — threshold and drop connected components of at most 7 pixels.
All functions work on stacks of 2-D maps (N, H, W) with scipy.ndimage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage


def _as_maps(maps: Any, name: str = "maps") -> np.ndarray:
    arr = np.asarray(maps)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W) or (H, W), got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    return arr


def foreground_mask(images: Any, threshold: float = 0.0, fill_holes: bool = True) -> np.ndarray:
    """Foreground (e.g. brain) mask: pixels above ``threshold`` in any channel, holes filled.

    Parameters
    ----------
    images : array-like
        (N, H, W) or (N, C, H, W).
    threshold : float
        Background level (0 for skull-stripped brains, whose background is exactly 0).
    fill_holes : bool
        Fill enclosed holes per image (dark ventricles are still foreground).

    Returns
    -------
    numpy.ndarray
        Boolean (N, H, W).
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr.max(axis=1)
    mask = _as_maps(arr, "images") > threshold
    if fill_holes:
        mask = np.stack([ndimage.binary_fill_holes(m) for m in mask])
    return mask


def erode_mask(mask: Any, iterations: int = 1) -> np.ndarray:
    """Binary erosion of each 2-D mask by ``iterations`` pixels (3×3 cross element)."""
    m = _as_maps(mask, "mask").astype(bool)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if iterations == 0:
        return m
    # structure with no extent along the stack axis: erode each image on its own
    structure = ndimage.generate_binary_structure(2, 1)[None]
    return ndimage.binary_erosion(m, structure=structure, iterations=iterations)


def apply_mask(maps: Any, mask: Any, erosion: int = 1) -> np.ndarray:
    """Zero the map outside the (eroded) foreground mask.

    Parameters
    ----------
    maps : array-like
        Anomaly maps (N, H, W).
    mask : array-like
        Boolean foreground (N, H, W) (or (N, 1, H, W)).
    erosion : int
        Erosion iterations applied to the mask first.
    """
    m = _as_maps(maps)
    mk = np.asarray(mask)
    if mk.ndim == 4 and mk.shape[1] == 1:
        mk = mk[:, 0]
    mk = _as_maps(mk, "mask")
    if mk.shape != m.shape:
        raise ValueError(f"mask shape {mk.shape} differs from map shape {m.shape}")
    return m * erode_mask(mk, erosion).astype(m.dtype)


def median_filter(maps: Any, size: int = 5) -> np.ndarray:
    """Median filter of each 2-D map (``size``×``size``; borders reflected)."""
    m = _as_maps(maps)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return ndimage.median_filter(m, size=(1, size, size), mode="reflect")


def remove_small_components(binary: Any, max_size: int = 7) -> np.ndarray:
    """Drop 8-connected components of at most ``max_size`` pixels from each 2-D mask."""
    b = _as_maps(binary, "binary").astype(bool)
    out = np.zeros_like(b)
    structure = np.ones((3, 3), dtype=bool)
    for i, img in enumerate(b):
        labels, n = ndimage.label(img, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())
        keep = sizes > max_size
        keep[0] = False
        out[i] = keep[labels]
    return out


def postprocess(
    maps: Any, mask: Any | None = None, erosion: int = 1, median_size: int | None = 5
) -> np.ndarray:
    """Masked, median-filtered anomaly maps (continuous; threshold with :func:`segment`).

    Parameters
    ----------
    maps : array-like
        Anomaly maps (N, H, W).
    mask : array-like, optional
        Foreground mask (see :func:`foreground_mask`); ``None`` skips masking.
    erosion : int
        Erosion iterations of the mask.
    median_size : int or None
        Median filter size; ``None`` skips it.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W).
    """
    out = _as_maps(maps).astype(np.float32)
    if mask is not None:
        out = apply_mask(out, mask, erosion)
    if median_size:
        out = median_filter(out, median_size)
        if mask is not None:  # the median can leak values just across the mask border
            out = apply_mask(out, mask, erosion)
    return out


def segment(maps: Any, threshold: float, max_small: int = 7) -> np.ndarray:
    """Binary segmentation: ``maps > threshold`` without components of <= ``max_small`` px."""
    return remove_small_components(_as_maps(maps) > threshold, max_small)
