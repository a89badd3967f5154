"""What the image commands share: input options, model loading, threads, per-image results."""

from __future__ import annotations

import argparse
from typing import Any

from diffad.data import NPY_3D


def add_input_args(
    p: argparse.ArgumentParser, flag: str = "--images", required: bool = True
) -> None:
    """``--images`` (or ``flag``) and the options that say how to read it."""
    p.add_argument(
        flag,
        required=required,
        help="folder or file (PNG/JPEG/TIFF/NPY/NIfTI) or a named source: mni152[:LO-HI], "
        "colin27[:LO-HI], fashion-mnist:CLASS[:train|test], elpv[:normal|defective|all]",
    )
    p.add_argument(
        "--npy-3d",
        choices=NPY_3D,
        default=None,
        help="what a 3-D .npy holds: a stack of N images (N, H, W), a volume to slice along "
        "--axis, or one rgb picture (H, W, 3); required when such a file is met",
    )
    p.add_argument("--axis", type=int, default=2, help="slicing axis of volumes (NIfTI)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images")


def add_runtime_args(p: argparse.ArgumentParser, device_default: str | None = "auto") -> None:
    """``--device``, ``--threads`` and ``--quiet``."""
    p.add_argument("--device", default=device_default, help="auto (CUDA when present), cpu, cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; on shared cores give the core count)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (a positive integer) to torch."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def read_images(
    args: argparse.Namespace, spec: str, size: int | None, limit_seed: int = 0
) -> Any:
    """The :class:`~diffad.data.raw_images.RawImages` named by ``spec`` and the input options
    (``--limit`` keeps a random subset seeded by ``limit_seed``)."""
    from diffad.data.raw_images import load_raw_images

    return load_raw_images(
        spec, size, npy_3d=args.npy_3d, axis=args.axis, limit=args.limit, seed=limit_seed
    )


def check_levels(**levels: float) -> None:
    """Each named level (``q=…``, ``alpha=…``) must be a probability strictly in (0, 1)."""
    for name, value in levels.items():
        if not 0 < value < 1:
            raise ValueError(f"--{name} must be in (0, 1), got {value}")
