"""What a region test selects on: the region maps of the localisers, as definitions.

A region test (``diffad.selective``) thresholds a map E of the image at λ and tests the
pixels it selects. This module says what E is for each localiser, so that the image side
owns the definitions and the selective side only traces them:

- a DDPM compares X with its seeded reconstruction: E = |K ∗ (D(X) − X)|
  (:class:`ReconstructionRegionMap`);
- DISYRE averages absolute restoration errors: E = K ∗ (w ⊙ mean_k |R_k(X) − X|), w a fixed
  foreground mask times its fraction (:class:`RestorationRegionMap`).

K is a size×size mean filter with zero padding. The definitions hold the fitted network and
the fixed constants of the map (noise draws, foreground), nothing about a test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from diffad.diffusion.chain import ReconstructionChain
from diffad.diffusion.unet import UNet


def mean_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """size×size mean filter of (B, C, H, W) with zero padding (window sum / size²)."""
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=True)


def foreground_mask(x: np.ndarray, threshold: float | None) -> np.ndarray:
    """Per-image foreground (B, 1, H, W): pixels where any channel exceeds ``threshold``
    (every pixel when ``threshold`` is None)."""
    x = np.asarray(x)
    if threshold is None:
        return np.ones((x.shape[0], 1, *x.shape[2:]), dtype=bool)
    return np.any(x > threshold, axis=1, keepdims=True)


def mean_abs_error(x: np.ndarray, restorations: Sequence[np.ndarray]) -> np.ndarray:
    """mean_k |R_k − X| for images (B, C, H, W), float64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    total = sum(np.abs(np.asarray(r, dtype=np.float64) - x) for r in restorations)
    return total / len(restorations)


def restoration_map(errors: np.ndarray, foreground: np.ndarray, filter_size: int) -> np.ndarray:
    """E = K ∗ (w ⊙ errors) for ``errors`` = :func:`mean_abs_error` (B, C, H, W), float64.

    ``foreground`` is a bool mask broadcastable to (B, 1, H, W); w is the mask times the
    image's foreground fraction.
    """
    errors = np.asarray(errors, dtype=np.float64)
    shape = (errors.shape[0], 1, *errors.shape[2:])
    fg = np.broadcast_to(np.asarray(foreground, dtype=bool), shape)
    weight = fg * fg.mean(axis=(1, 2, 3), keepdims=True)
    return mean_filter(torch.from_numpy(weight * errors), int(filter_size)).numpy()


def reconstruction_map(
    images: np.ndarray, reconstructions: np.ndarray, filter_size: int
) -> np.ndarray:
    """E = |K ∗ (D(X) − X)| for (B, C, H, W) images and reconstructions, float64."""
    diff = np.asarray(reconstructions, dtype=np.float64) - np.asarray(images, dtype=np.float64)
    return mean_filter(torch.from_numpy(diff), int(filter_size)).abs().numpy()


@dataclass(frozen=True, eq=False)
class ReconstructionRegionMap:
    """E = |K ∗ (D(X) − X)|, D one seeded reconstruction chain of a DDPM.

    Attributes
    ----------
    model : UNet
        The ε-prediction network (eval mode).
    chain : ReconstructionChain
        The partial-noise DDIM chain.
    noises : list of torch.Tensor
        The chain's fixed noise draws, each (1, C, H, W): the same for every image.
    """

    model: UNet
    chain: ReconstructionChain
    noises: list[torch.Tensor]


@dataclass(frozen=True, eq=False)
class RestorationRegionMap:
    """E = K ∗ (w ⊙ mean_k |R_k(X) − X|) over deterministic restoration chains R_k.

    Attributes
    ----------
    model : UNet
        The restorer's residual network (eval mode).
    chains : list of ReconstructionChain
        One chain per restoration (severity step, or the one sampler chain).
    foreground : numpy.ndarray
        Fixed bool (H, W) mask of w.
    """

    model: UNet
    chains: list[ReconstructionChain]
    foreground: np.ndarray


RegionMapDefinition = ReconstructionRegionMap | RestorationRegionMap
