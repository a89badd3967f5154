"""Anomaly maps from an image and its reconstruction, by name: L1, SSIM, SSIM-ens.

SSIM lives in :mod:`diffad.image.ssim` and SSIM-ens in :mod:`diffad.image.ssim_ens`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.nn import functional as F

from diffad.image import SCORES
from diffad.image.ssim import check_pair, ssim_score
from diffad.image.ssim_ens import ssim_ens_score


def l1_score(x: Any, rec: Any, mean_filter: bool = False) -> np.ndarray:
    """|X − D(X)| averaged over channels; optionally |K ∗ (X − D(X))| with K a 3×3 mean.

    The filter uses zero padding and divides by 9 everywhere, as in the DAL-Test selection
    event E = |K ∗ (D(X) − X)|.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W).
    """
    xt, rt = check_pair(x, rec)
    diff = xt - rt
    if mean_filter:
        diff = F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=True)
    return diff.abs().mean(dim=1).numpy().astype(np.float32)


def anomaly_score(x: Any, rec: Any, score: str = "ssim-ens", **kwargs: Any) -> np.ndarray:
    """Anomaly map by name.

    Parameters
    ----------
    x, rec : array-like
        Images and reconstructions, (N, C, H, W) or (N, H, W).
    score : {"l1", "ssim", "ssim-ens", "ssim-ens-mean"}
        Which map; ``"ssim-ens-mean"`` is SSIM-ens with ``reduction="mean"``.
    **kwargs
        Passed on: ``mean_filter`` (l1); ``sigma``, ``kernel_size``, ``data_range`` (ssim);
        ``sigmas``, ``reduction``, ``data_range`` (ssim-ens).

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W), higher = more anomalous.
    """
    try:
        if score == "l1":
            return l1_score(x, rec, **kwargs)
        if score == "ssim":
            return ssim_score(x, rec, **kwargs)
        if score == "ssim-ens":
            return ssim_ens_score(x, rec, **kwargs)
        if score == "ssim-ens-mean":
            return ssim_ens_score(x, rec, reduction="mean", **kwargs)
    except TypeError as err:  # unknown keyword for this score
        raise ValueError(f"bad option for score {score!r}: {err}") from err
    raise ValueError(f"unknown score {score!r}; choose from {', '.join(SCORES)}")
