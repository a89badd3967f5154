"""One preprocessing of raw images, fitted with the model and stored with it.

Every image a model sees — in ``fit``, ``anomaly_map``, ``decision_function``, the CLI's
``train-image``, ``localize``, ``test`` and ``report`` — goes through the same
:class:`ImagePreprocessing` that was fitted on the training images and saved in the
checkpoint. It fixes:

- **channels**: 1 (grey) or 3 (RGB), taken from the training images. An RGB model keeps its
  three channels; an image with the other number of channels is an error.
- **size**: (H, W) of the model. Training images of another size fix ``source_size``: images
  of that size are padded to a square and resized like the training images were. An image of
  any other size is an error unless ``resize=True``, which resizes every image.
- **intensity**: ``"range"`` maps the 1st/99th percentiles of all training pixels (one pair
  for the whole set, fitted once) to 0/1 and clips, so every image gets the same mapping;
  ``"per-image"`` stretches each image's own 1st/99th percentiles to 0/1 (for sets whose
  images come from different scanners or exposures); ``"none"`` takes images already in
  [0, 1] and only checks that they are.

Raw images are a 2-D array (H, W) (one grey image), a 3-D array (N, H, W) (N grey images), a
4-D array (N, C, H, W) (N images in channel-first layout, C = 1 or 3), or a list of (H, W) /
(H, W, 3) pictures, as the file readers return them. All are scaled alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

INTENSITIES = ("range", "per-image", "none")
_PERCENTILES = (1.0, 99.0)


def _as_list(images: Any) -> list[np.ndarray]:
    """Raw input as a list of float32 arrays (H, W) or (H, W, C), channels last.

    The layout rule has no guessing: an array of 2 dimensions is one grey image, of 3 a stack
    of grey images (N, H, W), of 4 a stack in model layout (N, C, H, W). Colour pictures as
    (H, W, 3) come in a list (one array per picture), as the file readers return them.
    """
    if isinstance(images, np.ndarray):
        arr = images
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"images must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 2:
            return [arr.astype(np.float32)]
        if arr.ndim == 3:
            return [a.astype(np.float32) for a in arr]
        if arr.ndim == 4:
            if arr.shape[1] not in (1, 3):
                raise ValueError(
                    f"a 4-D array must be (N, C, H, W) with C = 1 or 3, got {arr.shape}; "
                    "pass colour pictures (H, W, 3) as a list"
                )
            return [np.moveaxis(a, 0, -1).astype(np.float32) for a in arr]
        raise ValueError(f"images must be (H, W), (N, H, W) or (N, C, H, W), got {arr.shape}")
    out = []
    for i, img in enumerate(images):
        a = np.asarray(img)
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"image {i} is not numeric (dtype {a.dtype})")
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"image {i} must be (H, W) or (H, W, 3), got shape {a.shape}")
        out.append(a.astype(np.float32))
    return out


def _channels_of(img: np.ndarray) -> int:
    return 1 if img.ndim == 2 or img.shape[-1] == 1 else 3


def _to_chw(img: np.ndarray, channels: int) -> np.ndarray:
    if img.ndim == 2:
        img = img[..., None]
    img = img[..., :3] if img.shape[-1] == 4 else img  # drop alpha
    if img.shape[-1] != channels:
        what = "colour" if img.shape[-1] == 3 else "grey"
        raise ValueError(
            f"the model takes {channels}-channel images, got a {what} image; convert it first"
        )
    return np.moveaxis(img, -1, 0)


def _stretch(img: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(img)
    return np.clip((img - low) / (high - low), 0.0, 1.0)


@dataclass(eq=False)
class ImagePreprocessing:
    """Raw images → model input (N, C, H, W), float32 in [0, 1] (see the module docstring).

    Parameters
    ----------
    intensity : {"range", "per-image", "none"}
        Intensity scaling.
    resize : bool
        Accept images of another size (pad to square, resize); otherwise that is an error.
    size : tuple of int, optional
        (H, W) of the model; fitted from the first training image when None.
    channels : int, optional
        1 or 3; fitted from the training images when None.
    low, high : float, optional
        The fitted range of ``"range"``.
    source_size : tuple of int, optional
        (H, W) of the training images when they were resized to ``size``; fitted.
    """

    intensity: str = "range"
    resize: bool = False
    size: tuple[int, int] | None = None
    channels: int | None = None
    low: float | None = None
    high: float | None = None
    source_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITIES:
            raise ValueError(f"intensity must be one of {INTENSITIES}, got {self.intensity!r}")
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
        if self.source_size is not None:
            self.source_size = (int(self.source_size[0]), int(self.source_size[1]))

    # ------------------------------------------------------------------ fitting
    def fit(self, images: Any) -> ImagePreprocessing:
        """Fix channels, size and (for ``"range"``) the intensity range from training images."""
        imgs = _as_list(images)
        if not imgs:
            raise ValueError("no training images")
        kinds = {_channels_of(i) for i in imgs}
        if len(kinds) > 1:
            raise ValueError("the training images mix grey and colour pictures")
        self.channels = self.channels or kinds.pop()
        sizes = sorted({tuple(int(v) for v in i.shape[:2]) for i in imgs})
        if self.size is None:
            self.size = sizes[0]
        if len(sizes) > 1 and not self.resize:
            raise ValueError(
                f"the training images have {len(sizes)} different sizes ({sizes[0]}, "
                f"{sizes[1]}, ...); resize them first or ask for resizing (--resize)"
            )
        if sizes != [self.size] and not self.resize:
            self.source_size = sizes[0]
        if self.intensity == "range":
            pixels = np.concatenate([np.ravel(i) for i in imgs])
            self._check_finite(pixels)
            self.low, self.high = (float(v) for v in np.percentile(pixels, _PERCENTILES))
            if not self.high > self.low:
                raise ValueError("the training images are constant: nothing to learn")
        return self

    # ------------------------------------------------------------------ applying
    def transform(self, images: Any) -> np.ndarray:
        """The images in model layout (N, C, H, W), float32 in [0, 1].

        Raises
        ------
        ValueError
            Empty input, NaN/inf, the wrong number of channels, another size (unless
            ``resize``), values outside [0, 1] with ``intensity="none"``.
        """
        if self.size is None or self.channels is None:
            raise ValueError("this preprocessing is not fitted: call fit() first")
        imgs = _as_list(images)
        if not imgs:
            raise ValueError("no images")
        out = np.empty((len(imgs), self.channels, *self.size), dtype=np.float32)
        for k, img in enumerate(imgs):
            self._check_finite(img)
            chw = _to_chw(img, self.channels)
            out[k] = self._scale(self._fit_size(chw, k))
        return out

    def _fit_size(self, chw: np.ndarray, k: int) -> np.ndarray:
        if tuple(chw.shape[1:]) == self.size:
            return chw
        if not self.resize and tuple(chw.shape[1:]) != self.source_size:
            h, w = chw.shape[1:]
            trained = (
                f" (trained on {self.source_size[0]}x{self.source_size[1]} resized)"
                if self.source_size
                else ""
            )
            raise ValueError(
                f"image {k} is {h}x{w} pixels but the model takes {self.size[0]}x{self.size[1]}"
                f"{trained}; resize it first or ask for resizing (--resize / resize=True)"
            )
        from diffad.data.image_ops import pad_to_square, resize_stack

        square = pad_to_square(chw)
        if self.size[0] != self.size[1]:
            raise ValueError("resizing needs a square model size")
        return resize_stack(square, self.size[0])

    def _scale(self, chw: np.ndarray) -> np.ndarray:
        if self.intensity == "range":
            return _stretch(chw, self.low, self.high)
        if self.intensity == "per-image":
            low, high = np.percentile(chw, _PERCENTILES)
            return _stretch(chw, float(low), float(high))
        if chw.min() < -1e-6 or chw.max() > 1 + 1e-6:
            raise ValueError(
                f"intensity='none' takes images in [0, 1], got values in "
                f"[{chw.min():.3g}, {chw.max():.3g}]"
            )
        return np.clip(chw, 0.0, 1.0)

    @staticmethod
    def _check_finite(arr: np.ndarray) -> None:
        if not np.all(np.isfinite(arr)):
            raise ValueError("images contain NaN or infinite values")

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (for checkpoints)."""
        return {
            "intensity": self.intensity,
            "resize": bool(self.resize),
            "size": None if self.size is None else list(self.size),
            "channels": self.channels,
            "low": self.low,
            "high": self.high,
            "source_size": None if self.source_size is None else list(self.source_size),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ImagePreprocessing | None:
        """Inverse of :meth:`to_dict` (None stays None)."""
        if d is None:
            return None
        size = d.get("size")
        return cls(
            intensity=d.get("intensity", "range"),
            resize=bool(d.get("resize", False)),
            size=None if size is None else tuple(size),
            channels=d.get("channels"),
            low=d.get("low"),
            high=d.get("high"),
            source_size=None if d.get("source_size") is None else tuple(d["source_size"]),
        )


def describe(p: ImagePreprocessing | None, shape: Sequence[int]) -> str:
    """One line for the user: what the model does to an image."""
    if p is None:
        return f"images used as given, {shape[0]} channel(s) of {shape[1]}x{shape[2]}"
    what = {
        "range": f"range [{p.low:.4g}, {p.high:.4g}] → [0, 1]",
        "per-image": "each image's 1st-99th percentile → [0, 1]",
        "none": "already in [0, 1]",
    }
    if p.resize:
        sizing = " (other sizes resized)"
    elif p.source_size:
        sizing = f" (resized from {p.source_size[0]}x{p.source_size[1]})"
    else:
        sizing = ""
    return (
        f"{p.channels} channel(s) of {p.size[0]}x{p.size[1]}{sizing}; intensity {what[p.intensity]}"
    )
