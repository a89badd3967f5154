"""SSIM-ens (Behrendt et al., 2024): SSIM anomaly maps ensembled over window scales.

A_σ = 1 − SSIM_σ(X, D(X)) for σ ∈ {0.3, 0.5, …, 1.7}, combined per pixel by a soft maximum
A = Σ_k softmax_k(A_k)·A_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffad.image.ssim import check_pair, ssim_map

SSIM_ENS_SIGMAS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7)


def ssim_ens_score(
    x: Any,
    rec: Any,
    sigmas: Sequence[float] = SSIM_ENS_SIGMAS,
    reduction: str = "softmax",
    data_range: float = 1.0,
) -> np.ndarray:
    """SSIM-ens: per-pixel soft maximum (or mean) of A_σ = 1 − SSIM_σ over scales.

    Parameters
    ----------
    sigmas : sequence of float
        Window σ values (default 0.3, 0.5, …, 1.7: windows 3, 5, 5, 7, 9, 11, 11, 13).
    reduction : {"softmax", "mean"}
        ``"softmax"``: A = Σ_k softmax_k(A_k)·A_k per pixel (published SSIM-ens);
        ``"mean"``: the plain average over scales.
    data_range : float
        Dynamic range of the images.

    Returns
    -------
    numpy.ndarray
        Float32 (N, H, W).
    """
    if len(sigmas) == 0:
        raise ValueError("need at least one sigma")
    if reduction not in ("softmax", "mean"):
        raise ValueError(f"reduction must be 'softmax' or 'mean', got {reduction!r}")
    xt, rt = check_pair(x, rec)
    maps = torch.stack(
        [(1.0 - ssim_map(xt, rt, sigma=s, data_range=data_range)).mean(dim=1) for s in sigmas]
    )
    if reduction == "mean":
        out = maps.mean(dim=0)
    else:
        out = (torch.softmax(maps, dim=0) * maps).sum(dim=0)
    return out.numpy().astype(np.float32)
