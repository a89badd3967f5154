"""What the image commands share: input options, model loading, threads, per-image results."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

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


def read_images(args: argparse.Namespace, spec: str, size: int | None) -> Any:
    """The :class:`~diffad.data.raw_images.RawImages` named by ``spec`` and the input options."""
    from diffad.data.raw_images import load_raw_images

    return load_raw_images(
        spec, size, npy_3d=args.npy_3d, axis=args.axis, limit=args.limit, seed=args.seed
    )


def load_localizer(path: str, device: str | None, quiet: bool, resize: bool = False) -> Any:
    """A saved localiser, with progress bars per ``quiet`` and, if asked, input resizing."""
    from diffad.image.ddpm_localizer import DDPMLocalizer

    loc = DDPMLocalizer.load(path, device=device)
    loc.set_params(verbose=not quiet)
    if resize:
        if loc.preprocessing_ is None:
            raise ValueError("this model has no stored preprocessing, so it cannot resize")
        loc.preprocessing_.resize = True
    return loc


def model_summary(loc: Any, path: str) -> dict[str, Any]:
    """What the report says about the model."""
    from diffad.image.preprocessing import describe

    return {
        "path": str(path),
        "class": type(loc).__name__,
        "image_shape": list(loc.image_shape_),
        "score": loc.score,
        "image_score": loc.image_score,
        "preprocessing": describe(loc.preprocessing_, loc.image_shape_),
        "t_start": getattr(loc, "t_start", None),
        "ddim_steps": getattr(loc, "ddim_steps", None),
        "calibrated": hasattr(loc, "threshold_"),
        "threshold": getattr(loc, "threshold_", None),
    }


def image_entries(
    loc: Any, names: list[str], scores: np.ndarray, masks: np.ndarray | None, q: float | None
) -> list[dict[str, Any]]:
    """Per-image report entries: score, flag, conformal p-value, BH selection, mask size.

    The conformal p-values compare each score with the healthy calibration scores stored in
    the model (none when the model is not calibrated); Benjamini-Hochberg selects at ``q``
    across these images (skipped when ``q`` is None).
    """
    from diffad.conformal.fdr import benjamini_hochberg
    from diffad.conformal.p_values import conformal_p_values

    calibrated = hasattr(loc, "threshold_")
    p = conformal_p_values(loc.calibration_scores_, scores) if calibrated else None
    selected = benjamini_hochberg(p, q) if calibrated and q is not None else None
    entries = []
    for i, name in enumerate(names):
        entries.append(
            {
                "id": i,
                "name": name,
                "has_lesion": None,
                "image_score": float(scores[i]),
                "flagged": bool(scores[i] > loc.threshold_) if calibrated else None,
                "p_conformal": float(p[i]) if calibrated else None,
                "bh_selected": bool(selected[i]) if selected is not None else None,
                "mask_pixels": int(masks[i].sum()) if masks is not None else None,
                "region_pixels": None,
                "p_selective": None,
                "p_selective_bounds": None,
                "p_naive": None,
                "rejected": None,
                "test_message": None,
            }
        )
    return entries
