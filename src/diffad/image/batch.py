"""Validation of image batches handed to the image localisers."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_image_batch(images: Any, name: str = "images") -> tuple[np.ndarray, bool]:
    """Validate images and return them as float32 (N, C, H, W).

    Parameters
    ----------
    images : array-like or torch.Tensor
        Shape (N, H, W) (grey-scale) or (N, C, H, W).
    name : str
        Used in error messages.

    Returns
    -------
    batch : numpy.ndarray
        Float32 array of shape (N, C, H, W).
    squeezed : bool
        True when the input had no channel axis.

    Raises
    ------
    ValueError
        Empty input, wrong number of dimensions, or NaN/inf pixels.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    try:
        arr = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    squeezed = arr.ndim == 3
    if squeezed:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W) or (N, C, H, W), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} NaN or infinite pixel(s)")
    return arr, squeezed
