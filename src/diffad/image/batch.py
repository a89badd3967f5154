"""Image batches: validation of what the localisers are given, and batch-independent
network passes over them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm


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


def map_in_blocks(
    fn: Callable[[torch.Tensor], torch.Tensor | list[torch.Tensor]],
    data: np.ndarray,
    block: int,
    device: torch.device | str,
    desc: str,
    verbose: bool,
) -> list[np.ndarray]:
    """``fn`` over ``data`` (N, C, H, W) in blocks of exactly ``block`` images.

    The last block is zero-padded to ``block`` images: a network then always runs at one
    batch size, so its float rounding, and with it every image's output, is bit for bit the
    same whatever the number, order or company of the images. ``fn`` returns one tensor or a
    list of tensors (e.g. one per restoration chain), each with the block's leading axis.

    Returns
    -------
    list of numpy.ndarray
        One array per output of ``fn``, each (N, ...), on the CPU.
    """
    block = max(1, int(block))
    starts = range(0, len(data), block)
    outs: list[list[np.ndarray]] = []
    bar = tqdm(starts, desc=desc, disable=not verbose or len(starts) < 2)
    with torch.no_grad():
        for lo in bar:
            chunk = data[lo : lo + block]
            padded = np.zeros((block, *data.shape[1:]), dtype=data.dtype)
            padded[: len(chunk)] = chunk
            result = fn(torch.from_numpy(padded).to(device))
            parts = result if isinstance(result, list) else [result]
            outs.append([p[: len(chunk)].cpu().numpy() for p in parts])
    return [np.concatenate(group) for group in zip(*outs, strict=True)]
