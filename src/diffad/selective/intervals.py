"""The truncation set inside one network piece: where the selection M(z) equals M_obs (or
holds a coarser event, such as "a pixel of this tile is selected").

A *piece* is the interval around a traced point z on which every network decision is
constant (from :class:`~diffad.selective.tracer.ReconstructionTracer`); inside it the
filtered difference F(z) is affine, so the selection M(z) = {i : |F_i(z)| > λ} can only
change where some F_i crosses ±λ, and those points are solved for exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def merge_intervals(intervals: list | np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Sorted union of closed intervals as an (k, 2) array.

    Intervals closer than ``tol``·max(1, |end|) are joined: the ends of neighbouring pieces
    are computed from either side and may differ by rounding.
    """
    arr = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    if arr.size == 0:
        return arr
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    out = [arr[0].copy()]
    for lo, hi in arr[1:]:
        if lo <= out[-1][1] + tol * max(1.0, abs(out[-1][1])):
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append(np.array([lo, hi]))
    return np.vstack(out)


def _representative(bounds: np.ndarray) -> np.ndarray:
    """A point inside each consecutive segment of ``bounds`` (ends may be ±inf)."""
    left, right = bounds[:-1], bounds[1:]
    mid = 0.5 * (left + right)
    mid = np.where(np.isneginf(left), right - 1.0, mid)
    mid = np.where(np.isposinf(right), left + 1.0, mid)
    return np.where(np.isneginf(left) & np.isposinf(right), 0.0, mid)


def split_at(roots: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] cut at the finite ``roots`` inside it: the segment ends (sorted, with lo and
    hi) and one point inside each segment."""
    roots = roots[np.isfinite(roots) & (roots > lo) & (roots < hi)]
    bounds = np.concatenate([[lo], np.unique(roots), [hi]])
    return bounds, _representative(bounds)


def event_holds(event: Any, selected: np.ndarray) -> np.ndarray:
    """Which rows of ``selected`` ((k, n) bool selections) hold ``event``: the exact event
    "the selection equals ``event``" for a bool array, else ``event(selected)``."""
    if callable(event):
        return np.asarray(event(selected), dtype=bool)
    return (selected == np.asarray(event)[None, :]).all(axis=1)


def selection_intervals(
    z0: float,
    lo: float,
    hi: float,
    fv: np.ndarray,
    fs: np.ndarray,
    lam: float,
    m_obs: np.ndarray,
) -> list[tuple[float, float]]:
    """Sub-intervals of the piece [lo, hi] on which M(z) equals ``m_obs`` (or, for an event,
    on which the event holds).

    Parameters
    ----------
    z0 : float
        The traced point; F(z) = fv + fs·(z − z0) on the piece.
    lo, hi : float
        The piece.
    fv, fs : numpy.ndarray
        Shape (n,), value and slope of the filtered difference at z0.
    lam : float
        Threshold λ.
    m_obs : numpy.ndarray or callable
        Shape (n,), bool, the observed selection; or a coarser event: a function of the (k, n)
        selections of k points that says (k,) which of them hold it (see :func:`event_holds`).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.concatenate([(lam - fv) / fs, (-lam - fv) / fs]) + z0
    bounds, mids = split_at(roots, lo, hi)
    sel = np.abs(fv[None, :] + fs[None, :] * (mids - z0)[:, None]) > lam
    keep = event_holds(m_obs, sel)
    return [(float(bounds[k]), float(bounds[k + 1])) for k in np.flatnonzero(keep)]


def oc_interval(
    z0: float, lo: float, hi: float, fv: np.ndarray, fs: np.ndarray, lam: float
) -> tuple[float, float]:
    """Interval around z0 on which the network, every |F_i| sign and every F_i ≷ ±λ are constant."""
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.concatenate([-fv / fs, (lam - fv) / fs, (-lam - fv) / fs])
    up = off[np.isfinite(off) & (off > 0)]
    down = off[np.isfinite(off) & (off < 0)]
    left = max(lo, z0 + down.max()) if down.size else lo
    right = min(hi, z0 + up.min()) if up.size else hi
    return float(left), float(right)
