"""Fashion-MNIST from local idx files (Debian package ``dataset-fashion-mnist``).

Default folder: ``/usr/share/datasets/fashion-mnist`` (override with the ``root`` argument or
the ``DIFFAD_FASHION_MNIST_DIR`` environment variable). Files may be gzipped or not.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from diffad.data.image_ops import ImageSet, resize_stack

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
)  # fmt: skip
_PREFIX = {"train": "train", "test": "t10k"}
# idx type codes → numpy dtypes (big-endian where multi-byte)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an idx file (``.gz`` or plain): 4-byte magic, big-endian dims, then the data.

    Raises
    ------
    ValueError
        If the header is malformed or the payload size does not match it.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read idx file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)) * dtype.itemsize:
        raise ValueError(f"{path}: payload size does not match the idx header {tuple(dims)}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(tuple(int(d) for d in dims))


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {root}: install the Debian package "
        "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or set "
        "DIFFAD_FASHION_MNIST_DIR"
    )


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw Fashion-MNIST: ``(N, 28, 28)`` uint8 images and ``(N,)`` int64 labels.

    Parameters
    ----------
    split : {"train", "test"}
        60 000 training or 10 000 test images.
    root : path, optional
        Folder of the idx files; default ``DIFFAD_FASHION_MNIST_DIR`` or the Debian path.
    """
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root or os.environ.get("DIFFAD_FASHION_MNIST_DIR", DEFAULT_DIR))
    images = read_idx(_find(root, f"{_PREFIX[split]}-images-idx3-ubyte"))
    labels = read_idx(_find(root, f"{_PREFIX[split]}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split} files have inconsistent shapes")
    return np.asarray(images, dtype=np.uint8), labels.astype(np.int64)


def parse_class(value: str | int) -> int | None:
    """Class index from ``3``, ``"3"``, ``"dress"``, ``"ankle boot"``; ``None`` for ``"all"``."""
    if isinstance(value, int | np.integer):
        index = int(value)
    else:
        text = str(value).strip().lower().replace("_", "-").replace(" ", "-")
        if text == "all":
            return None
        aliases = {c: i for i, c in enumerate(CLASSES)}
        aliases.update({"t-shirt": 0, "tshirt": 0, "top": 0, "ankleboot": 9, "boot": 9})
        if text.isdigit():
            index = int(text)
        elif text in aliases:
            index = aliases[text]
        else:
            raise ValueError(f"unknown Fashion-MNIST class {value!r}; use 0-9, all, or {CLASSES}")
    if not 0 <= index <= 9:
        raise ValueError(f"Fashion-MNIST class must be in 0-9, got {index}")
    return index


def fashion_mnist_set(
    classes: str | int | list[str | int] = "all",
    split: str = "train",
    size: int = 32,
    root: str | os.PathLike | None = None,
) -> ImageSet:
    """Fashion-MNIST images of some classes as ``(N, 1, size, size)`` in ``[0, 1]``.

    Intensities are divided by 255 (no per-image stretching, which would erase the
    brightness differences between garments). ``labels`` holds the class indices.
    """
    wanted = classes if isinstance(classes, list) else [classes]
    indices = [parse_class(c) for c in wanted]
    images, labels = load_fashion_mnist(split, root)
    index = np.arange(len(labels))
    if None not in indices:
        index = np.flatnonzero(np.isin(labels, indices))
        images, labels = images[index], labels[index]
    stack = resize_stack(images.astype(np.float32) / 255.0, size)
    return ImageSet(
        images=np.clip(stack, 0.0, 1.0)[:, None],
        labels=labels,
        names=[f"fashion-mnist:{split}:{i}" for i in index],
    )
