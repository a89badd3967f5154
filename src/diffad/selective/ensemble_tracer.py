"""The DISYRE region-test map traced along a line: a mean of absolute restoration errors.

DISYRE's map is E = K ∗ (w ⊙ mean_k |R_k(X) − X|): R_k are restorations (one per severity
step of the ensemble, or one multi-step sampler chain), w is the foreground mask times the
foreground fraction, K a mean filter. :class:`RestorationEnsembleTracer` replays every
restoration with a :class:`~diffad.selective.tracer.ReconstructionTracer` (float64, exact
pieces) and turns their differences into the truncation set of the selection
M = {i : E_i > λ}:

inside one network piece every d_k = R_k(X(z)) − X(z) is affine in z, so E is piecewise
affine with breaks only where some d_k crosses zero; between those breaks the ±λ crossings
are solved exactly (:func:`~diffad.selective.intervals.selection_intervals`). The foreground
mask of the region test is a fixed array (the model's, from its training images), so that
the selection depends on X only through the restorations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from diffad.diffusion.chain import ReconstructionChain
from diffad.diffusion.unet import UNet
from diffad.image.region_maps import mean_filter, restoration_map
from diffad.selective.intervals import selection_intervals, split_at
from diffad.selective.prefix_cache import PrefixCache
from diffad.selective.tracer import ReconstructionTracer

# Sub-pieces evaluated at once when solving a piece (bounds the (S, K, n) temporaries).
_SUB_PIECE_CHUNK = 256


@dataclass(eq=False)
class EnsembleCache:
    """One :class:`PrefixCache` per restoration chain, for the points of one line."""

    parts: list[PrefixCache] = field(default_factory=list)

    @property
    def calls_run(self) -> int:
        """Network calls actually run over all chains."""
        return sum(p.calls_run for p in self.parts)


def abs_mean_selection_intervals(
    z0: float,
    lo: float,
    hi: float,
    dv: np.ndarray,
    ds: np.ndarray,
    weight: np.ndarray,
    image_shape: tuple[int, int, int],
    filter_size: int,
    lam: float,
    m_obs: np.ndarray,
) -> list[tuple[float, float]]:
    """Sub-intervals of [lo, hi] on which {i : E_i(z) > λ} equals ``m_obs``.

    Parameters
    ----------
    z0 : float
        The traced point; d_k(z) = dv_k + ds_k·(z − z0) on [lo, hi].
    lo, hi : float
        An interval on which every d_k is affine (a network piece).
    dv, ds : numpy.ndarray
        Shape (K, n): value and slope of the K restoration differences at z0.
    weight : numpy.ndarray
        Shape (n,): the foreground mask times its fraction, divided by K.
    image_shape : tuple
        (C, H, W) with C·H·W = n, for the mean filter.
    filter_size : int
        Side of the mean filter K.
    lam : float
        Threshold λ.
    m_obs : numpy.ndarray or callable
        Shape (n,), bool, the observed selection, or a coarser event
        (:func:`~diffad.selective.intervals.event_holds`).
    """
    active = weight > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = (z0 - dv[:, active] / ds[:, active]).ravel()
    bounds, mids = split_at(roots, lo, hi)
    out: list[tuple[float, float]] = []
    for start in range(0, mids.size, _SUB_PIECE_CHUNK):
        m = mids[start : start + _SUB_PIECE_CHUNK]
        val = dv[None] + ds[None] * (m - z0)[:, None, None]  # (S, K, n)
        e_val = (np.abs(val) * weight).sum(axis=1)
        e_slope = (np.sign(val) * ds[None] * weight).sum(axis=1)
        pair = torch.from_numpy(np.concatenate([e_val, e_slope])).reshape(-1, *image_shape)
        filt = mean_filter(pair, int(filter_size)).reshape(2 * m.size, -1).numpy()
        for j in range(m.size):
            k = start + j
            out.extend(
                selection_intervals(
                    m[j], bounds[k], bounds[k + 1], filt[j], filt[m.size + j], lam, m_obs
                )
            )
    return out


class RestorationEnsembleTracer:
    """Float64 tracer of E = K ∗ (w ⊙ mean_k |R_k(X) − X|) (see the module docstring).

    Parameters
    ----------
    model : UNet
        The restorer (eval mode); copied to float64.
    chains : sequence of ReconstructionChain
        The noise-free restorations R_k (:mod:`diffad.diffusion.cold`).
    image_shape : tuple of int
        (C, H, W) of the images.
    filter_size : int
        Odd side of the mean filter K.
    foreground : numpy.ndarray, optional
        Fixed bool (H, W) mask where the map is computed (w = 0 elsewhere); None: all pixels.
    device : torch.device or str, optional
        Where to compute.
    """

    def __init__(
        self,
        model: UNet,
        chains: Sequence[ReconstructionChain],
        image_shape: tuple[int, int, int],
        filter_size: int = 3,
        foreground: np.ndarray | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if filter_size < 1 or filter_size % 2 == 0:
            raise ValueError(f"filter_size must be a positive odd integer, got {filter_size}")
        if not chains:
            raise ValueError("need at least one restoration chain")
        self.image_shape = tuple(int(v) for v in image_shape)
        self.filter_size = int(filter_size)
        c, h, w = self.image_shape
        fg = np.ones((h, w), dtype=bool) if foreground is None else np.asarray(foreground, bool)
        if fg.shape != (h, w):
            raise ValueError(f"foreground mask {fg.shape} does not match the images ({h}, {w})")
        self.foreground = fg
        weight = fg * fg.mean() / len(chains)
        self.weight = np.broadcast_to(weight, (c, h, w)).ravel().astype(np.float64)
        # The chains add no noise (scale 0, σ = 0): zeros stand in for their noise inputs.
        self.parts = [
            ReconstructionTracer(
                model,
                chain,
                [torch.zeros((1, *self.image_shape), dtype=torch.float64)] * chain.n_noises,
                filter_size=1,
                device=device,
            )
            for chain in chains
        ]

    @property
    def calls_per_point(self) -> int:
        """Network calls one traced point costs (over all chains)."""
        return sum(p.calls_per_point for p in self.parts)

    def new_cache(self) -> EnsembleCache:
        """A fresh cache for the points of one line."""
        return EnsembleCache([p.new_cache() for p in self.parts])

    def restorations(self, images: np.ndarray) -> list[np.ndarray]:
        """R_k(X) for a batch (B, C, H, W), float64, one array per chain."""
        x = np.asarray(images, dtype=np.float64).reshape(-1, *self.image_shape)
        return [x + p.filtered_difference(x).reshape(x.shape) for p in self.parts]

    def selection_map(self, images: np.ndarray) -> np.ndarray:
        """E for a batch (B, C, H, W) → (B, C·H·W), float64."""
        x = np.asarray(images, dtype=np.float64).reshape(-1, *self.image_shape)
        # With filter_size 1 each part's "filtered difference" is R_k(X) − X itself.
        errors = sum(np.abs(p.filtered_difference(x)) for p in self.parts) / len(self.parts)
        e = restoration_map(errors.reshape(x.shape), self.foreground, self.filter_size)
        return e.reshape(len(x), -1)

    def differences(
        self, a: np.ndarray, b: np.ndarray, z: np.ndarray, cache: EnsembleCache | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pieces and restoration differences at points ``z`` of X(z) = a + b·z.

        Returns
        -------
        lo, hi : numpy.ndarray
            Shape (n,): the intersection of every chain's piece around each point.
        dv, ds : numpy.ndarray
            Shape (n, K, C·H·W): d_k = R_k(X(z)) − X(z) and its slope in z.
        """
        z = np.atleast_1d(np.asarray(z, dtype=np.float64))
        traces = [
            p.evaluate(a, b, z, cache=None if cache is None else cache.parts[k])
            for k, p in enumerate(self.parts)
        ]
        lo = np.max([t.lo for t in traces], axis=0)
        hi = np.min([t.hi for t in traces], axis=0)
        dv = np.stack([t.filt_value for t in traces], axis=1)
        ds = np.stack([t.filt_slope for t in traces], axis=1)
        return lo, hi, dv, ds

    def piece_selector(
        self,
        a: np.ndarray,
        b: np.ndarray,
        z_obs: float,
        lam: float,
        m_obs: np.ndarray,
        cache: EnsembleCache | None = None,
    ) -> Callable[[np.ndarray], list]:
        """``evaluate(zs)`` for the parametric search: each point's piece (lo, hi) and the
        sub-intervals of it on which the selection equals ``m_obs`` (``z_obs`` is not
        needed: the selection depends on X through the restorations only)."""

        def evaluate(zs: np.ndarray) -> list:
            lo, hi, dv, ds = self.differences(a, b, zs, cache)
            return [
                (
                    float(lo[k]),
                    float(hi[k]),
                    abs_mean_selection_intervals(
                        zs[k], lo[k], hi[k], dv[k], ds[k], self.weight, self.image_shape,
                        self.filter_size, lam, m_obs,
                    ),  # fmt: skip
                )
                for k in range(len(zs))
            ]

        return evaluate

    def oc_interval(
        self, a: np.ndarray, b: np.ndarray, z: float, lam: float
    ) -> tuple[float, float]:
        """The over-conditioned interval around ``z``: every network decision, every sign
        of every d_k and every comparison with λ held fixed."""
        lo, hi, dv, ds = self.differences(a, b, np.array([z]))
        active = self.weight > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            roots = (z - dv[0][:, active] / ds[0][:, active]).ravel()
        roots = roots[np.isfinite(roots)]
        left = max(lo[0], roots[roots < z].max(initial=-np.inf))
        right = min(hi[0], roots[roots > z].min(initial=np.inf))
        x = np.asarray(a, dtype=np.float64).ravel() + np.asarray(b, dtype=np.float64).ravel() * z
        m_obs = self.selection_map(x.reshape(1, *self.image_shape))[0] > lam
        for lo_k, hi_k in abs_mean_selection_intervals(
            z, left, right, dv[0], ds[0], self.weight, self.image_shape, self.filter_size,
            lam, m_obs,
        ):  # fmt: skip
            if lo_k <= z <= hi_k:
                return float(lo_k), float(hi_k)
        raise RuntimeError("the observed point is not in its own over-conditioned interval")
