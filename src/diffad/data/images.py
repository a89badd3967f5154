"""Image loading: files and folders (PNG/JPEG/NPY/NIfTI) and the one resolver for all sources.

:func:`load_image_source` is what the CLI calls with ``--data SPEC``. A spec is either a path
(a folder or a single file) or a named source:

- ``mni152[:LO-HI]`` — axial slices of the MNI152 template shipped with nilearn;
- ``colin27[:LO-HI]`` — axial slices of Colin27 (Debian ``mricron-data``);
  ``LO-HI`` is the slice band as fractions of the brain's extent, e.g. ``0.3-0.7``;
- ``fashion-mnist:CLASS[:train|test]`` — Fashion-MNIST idx files (Debian
  ``dataset-fashion-mnist``), CLASS a number 0-9, a name (``sneaker``) or ``all``;
- ``elpv[:normal|defective|all]`` — ELPV solar cells (PyPI ``elpv-dataset``, non-commercial
  licence).

Every loader returns ``(N, 1, H, W)`` float32 in ``[0, 1]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffad.data.image_files import list_image_files, read_image_file
from diffad.data.image_ops import (
    ImageSet,
    check_finite,
    foreground_bbox,
    resize_stack,
    scale_percentiles,
    volume_slices,
)

NAMED_SOURCES = ("mni152", "colin27", "fashion-mnist", "elpv")


def images_from_array(
    array: np.ndarray,
    size: int,
    name: str = "array",
    axis: int = 2,
    slice_range: tuple[int, int] | None = None,
    min_foreground: float = 0.05,
    crop: bool = False,
    percentiles: tuple[float | None, float] | None = (1.0, 99.0),
) -> ImageSet:
    """Turn one 2-D image or 3-D volume into ``(N, 1, size, size)`` images in ``[0, 1]``.

    Parameters
    ----------
    array : np.ndarray
        2-D image or 3-D volume.
    size : int
        Output side length (inputs are padded to square, then resized).
    name : str
        Prefix of the per-image names.
    axis, slice_range, min_foreground
        Slicing of volumes, see :func:`diffad.data.image_ops.volume_slices`; the foreground
        for ``min_foreground`` and ``crop`` is the set of pixels above 0 after scaling.
    crop : bool
        Crop to the foreground bounding box first (one box for a whole volume, so all of
        its slices keep the same framing).
    percentiles : (low, high) or None
        Intensity percentiles mapped to 0 and 1 (one pair per image or volume); ``None``
        means the data is already in ``[0, 1]`` (it is only clipped).
    """
    array = np.asarray(array, dtype=np.float32)
    check_finite(array, name)
    if percentiles is None:
        scaled = np.clip(array, 0.0, 1.0)
    else:
        scaled = scale_percentiles(array, percentiles[0], percentiles[1])
    fg = scaled > 0
    offset = 0  # names and slice_range use the original volume's slice indices
    if crop and fg.any():
        box = foreground_bbox(fg)
        scaled, fg = scaled[box], fg[box]
        offset = box[axis].start if scaled.ndim == 3 else 0
    if scaled.ndim == 2:
        stack, names = scaled[None], [name]
    elif scaled.ndim == 3:
        if slice_range is not None and offset:
            lo = min(max(slice_range[0] - offset, 0), scaled.shape[axis] - 1)
            slice_range = (lo, max(min(slice_range[1] - offset, scaled.shape[axis]), lo + 1))
        stack, index = volume_slices(
            scaled,
            axis=axis,
            slice_range=slice_range,
            min_foreground=min_foreground,
            foreground=fg,
        )
        names = [f"{name}:axis={axis}:{int(i) + offset}" for i in index]
    else:
        raise ValueError(f"{name}: expected a 2-D image or 3-D volume, got shape {array.shape}")
    images = np.clip(resize_stack(stack, size), 0.0, 1.0)[:, None]
    return ImageSet(images=images.astype(np.float32), names=names)


def load_image_folder(
    path: str | os.PathLike,
    size: int,
    axis: int = 2,
    slice_range: tuple[int, int] | None = None,
    min_foreground: float = 0.05,
    crop: bool = False,
    percentiles: tuple[float | None, float] | None = (1.0, 99.0),
    recursive: bool = False,
) -> ImageSet:
    """Load every image file of a folder (or one file) as ``(N, 1, size, size)`` in ``[0, 1]``.

    Pictures give one image each; volumes (NIfTI, 3-D NPY) give their 2-D slices along
    ``axis``. See :func:`images_from_array` for the parameters.
    """
    path = Path(path)
    files = [path] if path.is_file() else list_image_files(path, recursive=recursive)
    parts = [
        images_from_array(
            read_image_file(f),
            size,
            name=f.name,
            axis=axis,
            slice_range=slice_range,
            min_foreground=min_foreground,
            crop=crop,
            percentiles=percentiles,
        )
        for f in files
    ]
    return ImageSet(
        images=np.concatenate([p.images for p in parts]),
        names=[n for p in parts for n in p.names],
    )


def _subset(data: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """At most ``limit`` images, a seeded random subset kept in the original order."""
    if limit is None or limit >= len(data):
        return data
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=limit, replace=False))
    return data.subset(keep)


def _parse_band(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split("-"))
    except ValueError as err:
        raise ValueError(f"slice band must look like 0.3-0.7, got {text!r}") from err
    return lo, hi


def load_image_set(
    spec: str,
    size: int,
    *,
    limit: int | None = None,
    seed: int = 0,
    axis: int = 2,
    slice_range: tuple[int, int] | None = None,
    min_foreground: float = 0.05,
    crop: bool = False,
    percentiles: tuple[float | None, float] | None = (1.0, 99.0),
) -> ImageSet:
    """Resolve ``spec`` (a path or a named source) to an :class:`ImageSet`.

    Parameters
    ----------
    spec : str
        A folder or file path, or one of ``mni152[:LO-HI]``, ``colin27[:LO-HI]``,
        ``fashion-mnist:CLASS[:train|test]``, ``elpv[:normal|defective|all]``.
    size : int
        Output side length.
    limit : int, optional
        Keep at most this many images (seeded random subset, original order kept).
    seed : int
        Seed of that subset.
    axis, slice_range, min_foreground, crop, percentiles
        Folder/file options, see :func:`images_from_array`; named sources use their own
        documented preprocessing.

    Returns
    -------
    ImageSet
        ``images`` ``(N, 1, size, size)`` float32 in ``[0, 1]``, plus ``labels`` (Fashion-MNIST
        class, ELPV defect probability) and ``masks`` (brain foreground) where available.

    Raises
    ------
    FileNotFoundError
        A path that does not exist, or data whose package is not installed (the message
        names the package).
    ValueError
        A malformed spec, an empty folder, an unreadable file.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError("image source spec must be a non-empty string")
    if os.path.exists(spec):
        data = load_image_folder(
            spec,
            size,
            axis=axis,
            slice_range=slice_range,
            min_foreground=min_foreground,
            crop=crop,
            percentiles=percentiles,
        )
        return _subset(data, limit, seed)
    name, _, rest = spec.partition(":")
    name = name.lower()
    if name in ("mni152", "colin27"):
        from diffad.data.brain import brain_slices

        band = _parse_band(rest) if rest else None
        data = brain_slices(name, size, slice_fraction=band)
    elif name in ("fashion-mnist", "fashion_mnist", "fmnist"):
        from diffad.data.fashion_mnist import fashion_mnist_set

        cls, _, split = rest.partition(":")
        data = fashion_mnist_set(cls or "all", split=split or "train", size=size)
    elif name == "elpv":
        from diffad.data.elpv import elpv_set

        data = elpv_set(subset=rest or "all", size=size)
    else:
        raise FileNotFoundError(
            f"{spec!r} is neither an existing file/folder nor a known source "
            "(mni152, colin27, fashion-mnist:CLASS[:train|test], elpv[:normal|defective|all])"
        )
    return _subset(data, limit, seed)


def load_image_source(spec: str, size: int, **kwargs) -> np.ndarray:
    """Images only: ``load_image_set(spec, size, **kwargs).images``, ``(N, 1, H, W)`` in [0, 1].

    See :func:`load_image_set` for the spec grammar and options.
    """
    return load_image_set(spec, size, **kwargs).images
