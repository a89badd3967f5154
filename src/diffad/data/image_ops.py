"""Array operations shared by the image loaders: scaling, cropping, padding, resizing, slicing.

Everything works on float32 numpy arrays. Images are 2-D ``(H, W)``; stacks are
``(N, H, W)``; the loaders return ``(N, 1, H, W)`` in ``[0, 1]`` (see :class:`ImageSet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


@dataclass
class ImageSet:
    """Images loaded from one source, with what the source knows about them.

    Attributes
    ----------
    images : np.ndarray
        ``(N, 1, H, W)`` float32 in ``[0, 1]``.
    labels : np.ndarray or None
        One value per image when the source has labels (Fashion-MNIST class, ELPV defect
        probability), else ``None``.
    masks : np.ndarray or None
        ``(N, 1, H, W)`` bool foreground masks when the source defines them (brain slices).
    names : list of str
        A readable origin per image (file name, ``file:axis=2:z=80``, ``fashion-mnist:test:17``).
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray) -> ImageSet:
        """The images at ``index`` (an integer array), with their labels, masks and names."""
        index = np.asarray(index, dtype=int)
        return ImageSet(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            masks=None if self.masks is None else self.masks[index],
            names=[self.names[i] for i in index] if self.names else [],
        )


def check_finite(array: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if ``array`` holds NaN or infinity."""
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")


def scale_percentiles(
    image: np.ndarray,
    low: float | None = 1.0,
    high: float = 99.0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Map the ``low``/``high`` intensity percentiles to 0/1 and clip to ``[0, 1]``.

    Parameters
    ----------
    image : np.ndarray
        Any shape; one set of percentiles for the whole array (so a volume keeps its
        slice-to-slice contrast).
    low : float or None
        Lower percentile in ``[0, 100]``; ``None`` keeps 0 as the floor (for skull-stripped
        volumes whose background is exactly 0 and should stay 0).
    high : float
        Upper percentile in ``(low, 100]``.
    mask : np.ndarray, optional
        Boolean array of ``image``'s shape: percentiles are taken over these pixels only
        (e.g. the brain), so a large black background does not decide the contrast.

    Returns
    -------
    np.ndarray
        float32 array of the same shape in ``[0, 1]``; a constant image maps to zeros.
    """
    image = np.asarray(image, dtype=np.float32)
    check_finite(image, "image")
    if not 0.0 <= high <= 100.0 or (low is not None and not 0.0 <= low < high):
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    values = image if mask is None else image[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("scale_percentiles: the mask selects no pixels")
    lo = 0.0 if low is None else float(np.percentile(values, low))
    hi = float(np.percentile(values, high))
    if hi <= lo:
        # A constant image has no contrast to stretch: return zeros rather than dividing by 0.
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def foreground_bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Bounding box (one slice per axis) of the ``True`` pixels, grown by ``margin``.

    Raises
    ------
    ValueError
        If the mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("foreground_bbox: the foreground mask is empty")
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(hit[0] - margin, 0), min(hit[-1] + 1 + margin, mask.shape[axis])))
    return tuple(box)


def pad_to_square(stack: np.ndarray, value: float = 0.0) -> np.ndarray:
    """Pad the last two axes symmetrically with ``value`` so that H == W (keeps aspect ratio)."""
    h, w = stack.shape[-2:]
    n = max(h, w)
    top, left = (n - h) // 2, (n - w) // 2
    pad = [(0, 0)] * (stack.ndim - 2) + [(top, n - h - top), (left, n - w - left)]
    return np.pad(stack, pad, mode="constant", constant_values=value)


def resize_stack(stack: np.ndarray, size: int, mode: str = "bilinear") -> np.ndarray:
    """Resize ``(N, H, W)`` to ``(N, size, size)`` with torch (antialiased when shrinking).

    Non-square inputs are padded to a square first, so shapes are never distorted.
    ``mode="nearest"`` is for label masks.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    stack = pad_to_square(np.asarray(stack, dtype=np.float32))
    if stack.shape[-1] == size:
        return stack.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(stack))[:, None]
    if mode == "nearest":
        out = F.interpolate(t, size=(size, size), mode="nearest")
    else:
        shrink = size < stack.shape[-1]
        out = F.interpolate(t, size=(size, size), mode=mode, align_corners=False, antialias=shrink)
    return out[:, 0].numpy().astype(np.float32)


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """Resize boolean ``(N, H, W)`` masks: area-weighted resize then ``> 0.5``."""
    return resize_stack(np.asarray(masks, dtype=np.float32), size) > 0.5


def volume_slices(
    volume: np.ndarray,
    axis: int = 2,
    slice_range: tuple[int, int] | None = None,
    min_foreground: float = 0.0,
    foreground: np.ndarray | None = None,
    step: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D slices of a 3-D volume along ``axis``, skipping (nearly) empty ones.

    Parameters
    ----------
    volume : np.ndarray
        3-D array.
    axis : int
        Slicing axis (2 = axial for RAS-oriented NIfTI).
    slice_range : (int, int), optional
        Half-open index range ``[start, stop)`` along ``axis``; default all.
    min_foreground : float
        Keep a slice only if at least this fraction of its pixels is foreground; 0 keeps
        every slice that has any foreground pixel.
    foreground : np.ndarray, optional
        Boolean foreground of ``volume``'s shape; default ``volume > 0``.
    step : int
        Take every ``step``-th slice.

    Returns
    -------
    slices : np.ndarray
        ``(N, H, W)`` float32, each slice turned so that for RAS data anterior is up.
    index : np.ndarray
        The kept indices along ``axis``.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume_slices needs a 3-D volume, got shape {volume.shape}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    fg = volume > 0 if foreground is None else np.asarray(foreground, dtype=bool)
    moved = np.moveaxis(volume, axis, 0)
    fg_moved = np.moveaxis(fg, axis, 0)
    start, stop = (0, moved.shape[0]) if slice_range is None else slice_range
    if not 0 <= start < stop <= moved.shape[0]:
        raise ValueError(f"slice_range {slice_range} outside [0, {moved.shape[0]}) along {axis}")
    index = np.arange(start, stop, step)
    frac = fg_moved[index].reshape(len(index), -1).mean(axis=1)
    keep = frac > 0 if min_foreground <= 0 else frac >= min_foreground
    index = index[keep]
    if index.size == 0:
        raise ValueError("no slice of the volume has enough foreground (min_foreground too high?)")
    # rot90 turns a RAS (x, y) slice into a picture with anterior at the top.
    slices = np.rot90(moved[index], k=1, axes=(1, 2))
    return np.ascontiguousarray(slices, dtype=np.float32), index


def fill_mask(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice in a boolean ``(N, H, W)`` mask (dark ventricles stay brain)."""
    return np.stack([ndimage.binary_fill_holes(m) for m in np.asarray(mask, dtype=bool)])
