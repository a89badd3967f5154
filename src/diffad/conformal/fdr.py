"""Benjamini-Hochberg selection: false-discovery-rate control over a batch of p-values."""

from __future__ import annotations

import numpy as np


def benjamini_hochberg(p_values: np.ndarray, q: float = 0.1) -> np.ndarray:
    """Rows selected by the Benjamini-Hochberg step-up procedure at level ``q``.

    With sorted p-values p_(1) <= ... <= p_(m), let k = max{i : p_(i) <= q i / m}; the rows
    with the k smallest p-values are selected (none if no such i exists). This is the
    definition of ``statsmodels.stats.multitest.multipletests(method="fdr_bh")``. Under
    independent (or positively dependent, e.g. conformal) null p-values it controls
    FDR = E[#false selections / max(#selections, 1)] <= q.

    Parameters
    ----------
    p_values : array-like of shape (m,)
        P-values in [0, 1].
    q : float
        Target false-discovery rate, strictly between 0 and 1.

    Returns
    -------
    selected : ndarray of shape (m,), bool
        True for the selected rows.

    Raises
    ------
    ValueError
        If ``q`` is not in (0, 1), or p-values are empty, not 1-D, NaN or outside [0, 1].
    """
    if not 0.0 < float(q) < 1.0:
        raise ValueError(f"q must be strictly between 0 and 1, got {q}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {p.shape}")
    if p.size == 0:
        raise ValueError("p-values are empty")
    if np.isnan(p).any():
        raise ValueError("p-values contain NaN")
    if (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    below = p[order] <= q * np.arange(1, m + 1) / m
    selected = np.zeros(m, dtype=bool)
    if below.any():
        k = int(np.flatnonzero(below)[-1]) + 1  # step-up: the largest i that passes
        selected[order[:k]] = True
    return selected
