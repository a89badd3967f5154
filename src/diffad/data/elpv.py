"""ELPV: 2 624 electroluminescence images of solar cells with a defect probability.

The data comes from the optional PyPI package ``elpv-dataset`` (licence CC BY-NC-SA 4.0,
non-commercial): it is never a dependency of diffad and is imported only when asked for.
Labels are the annotated defect probabilities 0, 1/3, 2/3, 1.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from diffad.data.image_ops import ImageSet, resize_stack

SUBSETS = ("all", "normal", "defective")


def elpv_root() -> Path:
    """Folder holding ``labels.csv`` and ``images/`` of the installed ``elpv-dataset``.

    Raises
    ------
    FileNotFoundError
        If the package is not installed.
    """
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "ELPV data needs the optional package elpv-dataset (pip install elpv-dataset; "
            "licence CC BY-NC-SA 4.0, non-commercial use only)"
        )
    root = Path(spec.origin).parent / "data"
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(f"elpv-dataset is installed but {root / 'labels.csv'} is missing")
    return root


def read_elpv_labels(root: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Image paths (relative), defect probabilities and cell types (mono/poly) from labels.csv."""
    paths, probs, types = [], [], []
    for line in (root / "labels.csv").read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"malformed line in {root / 'labels.csv'}: {line!r}")
        paths.append(parts[0])
        probs.append(float(parts[1]))
        types.append(parts[2])
    return paths, np.asarray(probs, dtype=np.float64), types


def elpv_set(subset: str = "all", size: int = 32, cell_type: str | None = None) -> ImageSet:
    """ELPV cells as ``(N, 1, size, size)`` in ``[0, 1]``; ``labels`` = defect probability.

    Parameters
    ----------
    subset : {"all", "normal", "defective"}
        ``normal`` = probability 0, ``defective`` = probability 1 (the uncertain 1/3 and 2/3
        annotations are only in ``all``).
    size : int
        Output side (the 300×300 cells are resized with antialiasing).
    cell_type : {"mono", "poly"}, optional
        Keep one cell technology only.
    """
    subset = subset.lower()
    if subset not in SUBSETS:
        raise ValueError(f"ELPV subset must be one of {SUBSETS}, got {subset!r}")
    if cell_type not in (None, "mono", "poly"):
        raise ValueError(f"cell_type must be 'mono', 'poly' or None, got {cell_type!r}")
    root = elpv_root()
    paths, probs, types = read_elpv_labels(root)
    keep = np.ones(len(paths), dtype=bool)
    if subset == "normal":
        keep &= probs == 0.0
    elif subset == "defective":
        keep &= probs == 1.0
    if cell_type is not None:
        keep &= np.asarray(types) == cell_type
    index = np.flatnonzero(keep)
    from diffad.data.image_files import read_picture

    # Resize one at a time: the full set at 300×300 would hold ~1 GB of float32.
    images = np.concatenate(
        [resize_stack(read_picture(root / paths[i])[None], size) for i in index]
    )
    return ImageSet(
        images=np.clip(images, 0.0, 1.0)[:, None].astype(np.float32),
        labels=probs[index],
        names=[f"elpv:{Path(paths[i]).name}" for i in index],
    )
