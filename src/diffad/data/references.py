"""Per-image references for the region test: one healthy image matched to each tested image.

Two ways to match, by what the reference source is:

- a **folder or file** of references: the reference of an image is the one with the same name
  (file name, or ``file:axis=A:K`` for a slice of a volume);
- a **registered healthy brain** (``mni152`` or ``colin27``, optionally with a band
  ``:LO-HI``): for brain slices, the slice of that brain at the same relative position in the
  band (both templates are in MNI space, see :func:`diffad.data.brain.same_position_references`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diffad.data.brain import BRAIN_SOURCES, same_position_references
from diffad.data.image_ops import ImageSet
from diffad.data.raw_images import RawImages, load_raw_images


def _band(spec: str) -> str | None:
    """The ``LO-HI`` part of a brain source spec, if any."""
    parts = spec.split(":", 1)
    return parts[1] if len(parts) == 2 else None


def paired_references(
    images: RawImages, images_spec: str, spec: str, size: int | None, **read: Any
) -> list[np.ndarray] | np.ndarray:
    """The reference of each image of ``images`` (read from ``images_spec``) from ``spec``.

    Parameters
    ----------
    images : RawImages
        The tested (or calibration) images.
    images_spec : str
        What they were read from (for brain slices: their source and band).
    spec : str
        A folder or file of references matched by name, or a brain source (``mni152[:LO-HI]``).
    size : int, optional
        Side of named sources.
    **read
        Options of :func:`~diffad.data.raw_images.load_raw_images` for a folder or file.

    Returns
    -------
    list of numpy.ndarray or numpy.ndarray
        One reference per image, in the images' order and form.

    Raises
    ------
    ValueError
        An image without a reference of its name, or brain references for images that are
        not brain slices.
    """
    source = spec.split(":", 1)[0]
    if source in BRAIN_SOURCES:
        own_source = images_spec.split(":", 1)[0]
        if own_source not in BRAIN_SOURCES:
            raise ValueError(
                f"references {spec!r} match brain slices by position, but the images come from "
                f"{images_spec!r}: give a folder of references with the images' file names"
            )
        band = _band(images_spec)
        if _band(spec) is None and band is not None:
            spec = f"{spec}:{band}"
        brain = load_raw_images(spec, size)
        whole_band = load_raw_images(images_spec, size)  # positions are relative to the band
        return same_position_references(
            images.names, whole_band.names, ImageSet(np.asarray(brain.images), names=brain.names)
        )
    refs = load_raw_images(spec, size, **read)
    by_name = dict(zip(refs.names, list(refs.images), strict=True))
    missing = [n for n in images.names if n not in by_name]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) have no reference of the same name in {spec} "
            f"(first: {missing[0]})"
        )
    return [by_name[n] for n in images.names]
