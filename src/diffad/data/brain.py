"""Axial brain MRI slices from two locally installed T1 templates, with brain masks.

- ``mni152``: the skull-stripped MNI152 (ICBM 2009a) T1 template that ships inside the
  nilearn wheel (``nilearn.datasets.load_mni152_template`` reads a file of the package; no
  download). Install with ``pip install nilearn``.
- ``colin27``: Colin Holmes' 27-scan average, skull-stripped (``ch2bet.nii.gz``), from the
  Debian package ``mricron-data`` (``apt-get install mricron-data``).

Both are 1 mm, RAS-oriented, in MNI space, so the same band of slices (given as fractions
of the brain's superior-inferior extent) shows comparable anatomy in both: one can train on
one brain and test on the other.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffad.data.image_ops import (
    ImageSet,
    fill_mask,
    foreground_bbox,
    resize_masks,
    resize_stack,
    scale_percentiles,
    volume_slices,
)

COLIN27_PATH = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
BRAIN_SOURCES = ("mni152", "colin27")
#: The band of axial slices (fractions of the brain's extent) the demo and benchmarks use.
BAND = (0.25, 0.8)


def load_brain_volume(name: str) -> np.ndarray:
    """Raw float32 volume ``(x, y, z)`` (RAS) of ``mni152`` or ``colin27``; background is 0.

    Raises
    ------
    FileNotFoundError
        If the package that provides the template is not installed (named in the message).
    ValueError
        For an unknown name.
    """
    name = name.lower()
    if name == "mni152":
        try:
            from nilearn.datasets import load_mni152_template
        except ImportError as err:
            raise FileNotFoundError(
                "the MNI152 template comes with nilearn: pip install nilearn"
            ) from err
        img = load_mni152_template(resolution=1)
        return np.asarray(img.get_fdata(), dtype=np.float32)
    if name == "colin27":
        path = Path(os.environ.get("DIFFAD_COLIN27", COLIN27_PATH))
        if not path.is_file():
            raise FileNotFoundError(
                f"Colin27 template not found at {path}: it is in the Debian package "
                "mricron-data (apt-get install mricron-data), or set DIFFAD_COLIN27"
            )
        from diffad.data.image_files import read_image_file

        return read_image_file(path)
    raise ValueError(f"unknown brain source {name!r}; choose from {BRAIN_SOURCES}")


def brain_slices(
    name: str,
    size: int,
    slice_fraction: tuple[float, float] | None = None,
    min_foreground: float = 0.1,
    step: int = 1,
    margin: int = 2,
    high_percentile: float = 99.0,
) -> ImageSet:
    """Axial slices of a brain template, scaled to [0, 1], with brain foreground masks.

    Parameters
    ----------
    name : {"mni152", "colin27"}
        Which brain.
    size : int
        Output side length; the brain's bounding box (same for all slices) is padded to a
        square and resized, so the two templates are framed alike.
    slice_fraction : (float, float), optional
        Keep axial slices in this band of the brain's inferior→superior extent, e.g.
        ``(0.3, 0.7)`` for the mid-brain slices; default all.
    min_foreground : float
        Drop slices whose brain mask covers less than this fraction of the (square) picture.
    step : int
        Every ``step``-th slice.
    margin : int
        Voxels kept around the brain's bounding box.
    high_percentile : float
        Brain-voxel intensity percentile mapped to 1 (background stays 0).

    Returns
    -------
    ImageSet
        ``images`` ``(N, 1, size, size)``, ``masks`` (bool, hole-filled brain masks), names
        like ``mni152:z=87``.
    """
    volume = load_brain_volume(name)
    brain = volume > 0
    box = foreground_bbox(brain, margin=margin)
    volume, brain = volume[box], brain[box]
    # Scale on brain voxels only; low=None keeps the background at exactly 0.
    volume = scale_percentiles(volume, low=None, high=high_percentile, mask=brain)
    depth = volume.shape[2]
    if slice_fraction is None:
        start, stop = 0, depth
    else:
        lo, hi = slice_fraction
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"slice_fraction must satisfy 0 <= lo < hi <= 1, got {slice_fraction}")
        start, stop = int(np.floor(lo * depth)), max(int(np.ceil(hi * depth)), int(lo * depth) + 1)
    slices, index = volume_slices(
        volume, axis=2, slice_range=(start, stop), foreground=brain, step=step
    )
    masks, _ = volume_slices(
        brain.astype(np.float32), axis=2, slice_range=(start, stop), foreground=brain, step=step
    )
    images = np.clip(resize_stack(slices, size), 0.0, 1.0)
    masks = fill_mask(resize_masks(masks > 0.5, size))
    frac = masks.reshape(len(masks), -1).mean(axis=1)
    keep = frac >= min_foreground
    if not keep.any():
        raise ValueError(f"no {name} slice has brain fraction >= {min_foreground}")
    z0 = box[2].start
    return ImageSet(
        images=images[keep][:, None].astype(np.float32),
        masks=masks[keep][:, None],
        names=[f"{name}:z={int(z0 + i)}" for i in index[keep]],
    )


def brain_split(size: int) -> dict[str, ImageSet]:
    """The demo's and the benchmarks' split of the two brains, slices of :data:`BAND`.

    Returns
    -------
    dict of ImageSet
        ``train``: every MNI152 slice; ``calibration``: the even-numbered Colin27 slices
        (another brain: healthy images the model never saw); ``test``: the odd-numbered
        Colin27 slices (adjacent to the calibration ones, never used to fit or calibrate).
    """
    train = brain_slices("mni152", size, slice_fraction=BAND)
    other = brain_slices("colin27", size, slice_fraction=BAND)
    even, odd = np.arange(0, len(other), 2), np.arange(1, len(other), 2)
    return {"train": train, "calibration": other.subset(even), "test": other.subset(odd)}


def slice_positions(names: list[str], band_names: list[str]) -> np.ndarray:
    """Relative positions in [0, 1] of brain slices within their brain's band, from the
    ``name:z=K`` names of :func:`brain_slices`: 0 at the band's first slice (in
    ``band_names``, the whole band of that brain), 1 at its last."""

    def z_of(items: list[str]) -> np.ndarray:
        return np.array([int(n.rsplit("z=", 1)[1]) for n in items], dtype=np.float64)

    band = z_of(band_names)
    span = band.max() - band.min()
    return (z_of(names) - band.min()) / (span if span > 0 else 1.0)


def same_position_references(
    names: list[str], band_names: list[str], brain: ImageSet
) -> np.ndarray:
    """For each slice named in ``names`` (of a brain whose whole band is ``band_names``), the
    slice of another registered ``brain`` (the same band of it, from :func:`brain_slices`) at
    the same relative position: (N, 1, H, W). Both brains are in MNI space, so it shows the
    same anatomy: a healthy reference per slice for the region test."""
    here = slice_positions(names, band_names)
    there = slice_positions(brain.names, brain.names)
    nearest = np.abs(here[:, None] - there[None, :]).argmin(axis=1)
    return brain.images[nearest]
