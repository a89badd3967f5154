"""Reading image files: the one picture reader and the array readers (NPY, NIfTI).

Pictures (PNG, JPEG, BMP, TIFF) are read by :func:`read_picture` only: float32 in [0, 1]
(integer pixels divided by their type's maximum), grey as (H, W), colour as (H, W, 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from diffad.data.image_ops import check_finite

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = PIL_SUFFIXES + (".npy",) + NIFTI_SUFFIXES
#: ITU-R 601 luma weights (Pillow's "L" conversion): colour pictures as one grey channel.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def read_picture(path: str | os.PathLike) -> np.ndarray:
    """One picture as float32 in [0, 1]: (H, W) grey or (H, W, 3) colour.

    Raises
    ------
    ValueError
        The file is not a picture Pillow can decode, or is empty.
    """
    path = Path(path)
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow is in the [image] extra
        raise ValueError("reading pictures needs Pillow: pip install 'diffad[image]'") from err
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA"):
                # A palette picture is grey when every palette colour is (v, v, v).
                rgb = np.asarray(img.convert("RGB"))
                grey = bool(
                    np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])
                )
                img = img.convert("L" if grey else "RGB")
            elif img.mode in ("RGBA", "LA", "CMYK", "YCbCr", "HSV"):
                img = img.convert("L" if img.mode == "LA" else "RGB")
            if img.mode == "1":
                img = img.convert("L")
            arr = np.asarray(img)
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one clear error
        raise ValueError(f"cannot read {path} as a picture: {err}") from err
    if arr.size == 0:
        raise ValueError(f"{path} is an empty picture")
    scaled = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        scaled /= float(np.iinfo(arr.dtype).max)
    check_finite(scaled, str(path))
    return scaled


def file_suffix(path: Path) -> str:
    """The lower-case suffix of ``path`` (``.nii.gz`` as one)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _decode_array(path: Path, suffix: str) -> np.ndarray:
    """Decode an NPY or NIfTI file (the decoders raise their own exception types)."""
    if suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(np.float32)
    try:
        import nibabel
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ValueError("reading NIfTI needs nibabel: pip install 'diffad[image]'") from err
    array = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    return array


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read one file as a float32 array: 2-D for pictures, 2-D or 3-D for NPY and NIfTI.

    Pictures come from :func:`read_picture` (in [0, 1]); colour ones are converted to grey
    (luma). A 3-D NPY array is a volume, like a NIfTI file; a 4-D NIfTI with one time point
    is squeezed.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded, has an unsupported suffix or dimensionality, or holds
        NaN/infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    suffix = file_suffix(path)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"unsupported image file type {suffix!r} ({path}); "
            f"supported: {', '.join(IMAGE_SUFFIXES)}"
        )
    if suffix in PIL_SUFFIXES:
        picture = read_picture(path)
        return picture @ LUMA if picture.ndim == 3 else picture
    try:
        array = _decode_array(path, suffix)
    except Exception as err:  # noqa: BLE001 - every decoder failure becomes one clear error
        raise ValueError(f"cannot read image file {path}: {err}") from err
    if array.ndim not in (2, 3) or min(array.shape) < 1:
        raise ValueError(f"{path}: expected a 2-D image or 3-D volume, got shape {array.shape}")
    check_finite(array, str(path))
    return array


def list_image_files(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted image files (by the supported suffixes) in ``folder``.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If it holds no supported image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p for p in folder.glob(pattern) if p.is_file() and file_suffix(p) in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"folder {folder} contains no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files
