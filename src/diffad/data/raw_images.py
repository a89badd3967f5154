"""Images as a user gives them, for a model whose preprocessing is stored with it.

The image commands (``train-image``, ``localize``, ``test``) read their inputs here and
hand them, unscaled, to the model's :class:`~diffad.image.preprocessing.ImagePreprocessing`,
so every command treats an image the same way:

- **pictures** (PNG, JPEG, BMP, TIFF) keep their channels: grey stays one channel, colour
  becomes (H, W, 3) (an alpha channel is dropped), and integer pixels are divided by their
  type's maximum (255 for 8-bit, 65 535 for 16-bit) so a picture is in [0, 1];
- **NIfTI** files are volumes: their 2-D slices along ``axis`` that have foreground;
- a **2-D .npy** is one grey image; a **3-D .npy** is ambiguous and needs ``npy_3d``:
  ``"stack"`` (N, H, W) = N images, ``"volume"`` = slices along ``axis``, ``"rgb"``
  (H, W, 3) = one colour picture — never a guess;
- **named sources** (``mni152``, ``colin27``, ``fashion-mnist:CLASS``, ``elpv``) come from
  their loaders (:func:`diffad.data.images.load_image_set`) at the requested size, already
  in [0, 1], with brain masks where they exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffad.data import NPY_3D
from diffad.data.image_files import (
    NIFTI_SUFFIXES,
    PIL_SUFFIXES,
    list_image_files,
    read_image_file,
    read_picture,
)
from diffad.data.image_ops import volume_slices
from diffad.data.images import load_image_set

_VOLUME_FOREGROUND = 0.05  # a slice is kept when 5 % of it is above the volume's floor


@dataclass(eq=False)
class RawImages:
    """Images before the model's preprocessing.

    Attributes
    ----------
    images : list of numpy.ndarray or numpy.ndarray
        (H, W) or (H, W, 3) float32 pictures, or an (N, 1, H, W) array from a named source.
    names : list of str
        One readable, unique name per image.
    masks : numpy.ndarray or None
        (N, H, W) bool foreground masks where the source defines them.
    """

    images: list[np.ndarray] | np.ndarray
    names: list[str]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: np.ndarray) -> RawImages:
        """The images at ``index`` (in that order)."""
        index = np.asarray(index, dtype=int)
        imgs = (
            self.images[index]
            if isinstance(self.images, np.ndarray)
            else [self.images[i] for i in index]
        )
        masks = None if self.masks is None else self.masks[index]
        return RawImages(imgs, [self.names[i] for i in index], masks)


def _volume(volume: np.ndarray, name: str, axis: int) -> tuple[list[np.ndarray], list[str]]:
    low, high = np.percentile(volume, (1, 99))
    foreground = volume > low + 0.05 * (high - low)
    slices, index = volume_slices(
        volume, axis=axis, min_foreground=_VOLUME_FOREGROUND, foreground=foreground
    )
    return list(slices), [f"{name}:axis{axis}:{int(i)}" for i in index]


def _read_file(path: Path, npy_3d: str | None, axis: int) -> tuple[list[np.ndarray], list[str]]:
    name = path.name
    if path.suffix.lower() in PIL_SUFFIXES:
        return [read_picture(path)], [name]
    array = read_image_file(path)  # .npy / NIfTI, with its own clear errors
    if array.ndim == 2:
        return [array], [name]
    if any(name.lower().endswith(s) for s in NIFTI_SUFFIXES):
        return _volume(array, name, axis)
    if npy_3d is None:
        raise ValueError(
            f"{path} is a 3-D array {array.shape}: say what it is with --npy-3d stack "
            "(N images of H x W), volume (slices along --axis) or rgb (one H x W x 3 picture)"
        )
    if npy_3d == "stack":
        return list(array), [f"{name}:{i}" for i in range(len(array))]
    if npy_3d == "volume":
        return _volume(array, name, axis)
    if array.shape[-1] != 3:
        raise ValueError(f"{path}: --npy-3d rgb needs shape (H, W, 3), got {array.shape}")
    return [array], [name]


def load_raw_images(
    spec: str,
    size: int | None = None,
    *,
    npy_3d: str | None = None,
    axis: int = 2,
    limit: int | None = None,
    seed: int = 0,
) -> RawImages:
    """Read a folder, a file or a named source (see the module docstring).

    Parameters
    ----------
    spec : str
        Folder, file, or ``mni152[:LO-HI]`` / ``colin27[:LO-HI]`` /
        ``fashion-mnist:CLASS[:train|test]`` / ``elpv[:subset]``.
    size : int, optional
        Side length for named sources (required for them; files keep their own size).
    npy_3d : {"stack", "volume", "rgb"}, optional
        Meaning of 3-D .npy files (an error when such a file is met without it).
    axis : int
        Slicing axis of volumes.
    limit : int, optional
        At most this many images (a seeded random subset, original order kept).
    seed : int
        Seed of that subset.

    Raises
    ------
    FileNotFoundError
        A missing path, or a named source whose package is not installed.
    ValueError
        An unreadable or non-image file, an empty array, an ambiguous 3-D .npy.
    """
    if npy_3d is not None and npy_3d not in NPY_3D:
        raise ValueError(f"npy_3d must be one of {NPY_3D}, got {npy_3d!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if not isinstance(spec, str) or not spec:
        raise ValueError("image source must be a non-empty string")
    if os.path.exists(spec):
        path = Path(spec)
        files = [path] if path.is_file() else list_image_files(path)
        images: list[np.ndarray] = []
        names: list[str] = []
        for f in files:
            imgs, nms = _read_file(f, npy_3d, axis)
            images += imgs
            names += nms
        raw = RawImages(images, names)
    else:
        if size is None:
            raise ValueError(f"named source {spec!r} needs a size")
        data = load_image_set(spec, size)
        masks = None if data.masks is None else data.masks[:, 0]
        names = data.names or [f"{spec}:{i}" for i in range(len(data))]
        raw = RawImages(data.images, names, masks)
    if limit is not None and limit < len(raw):
        keep = np.sort(np.random.default_rng(seed).choice(len(raw), size=limit, replace=False))
        raw = raw.subset(keep)
    return raw
