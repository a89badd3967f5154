"""The p-value of a partly explored truncation set, and how far its bracket can move.

After each search round the truncation set is known exactly on the explored range [l, r];
the two unexplored tails (−∞, l) and (r, ∞) may or may not belong to it. These functions
give the p-value on the known set, its bracket over every membership of the tails, and the
points beyond which the tails cannot widen the bracket past a given precision.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtri

from diffad.selective.truncnorm import log_interval_mass


def log_masses(intervals: np.ndarray, z: float, alternative: str) -> tuple[float, float]:
    """log masses (A, B) of the truncation set with p = f(A, B) (see :func:`p_from_masses`)."""
    if intervals.size == 0:
        return -np.inf, -np.inf
    lo, hi = intervals[:, 0], intervals[:, 1]
    if alternative == "abs":
        a = abs(z)
        tail = logsumexp(
            np.concatenate(
                [
                    log_interval_mass(lo, np.minimum(hi, -a)),
                    log_interval_mass(np.maximum(lo, a), hi),
                ]
            )
        )
        inner = logsumexp(log_interval_mass(np.maximum(lo, -a), np.minimum(hi, a)))
        return float(tail), float(inner)
    below = logsumexp(log_interval_mass(lo, np.minimum(hi, z)))
    above = logsumexp(log_interval_mass(np.maximum(lo, z), hi))
    return float(below), float(above)


def p_from_masses(log_a: float, log_b: float, alternative: str) -> float:
    """p from the two log masses of :func:`log_masses` (two-sided: A below z, B above)."""
    total = np.logaddexp(log_a, log_b)
    if not np.isfinite(total):
        return float("nan")
    if alternative == "abs":
        return float(min(1.0, np.exp(log_a - total)))
    return float(min(1.0, 2.0 * np.exp(min(log_a, log_b) - total)))


def p_bounds(la: float, lb: float, z: float, left: float, right: float, alternative: str):
    """p on the known set, given by its log masses (``log_masses``), and its bracket over
    the unknown tails (−∞, left), (right, ∞)."""
    p = p_from_masses(la, lb, alternative)
    # Unknown masses, split as the p formula needs them.
    if alternative == "abs":
        unk = np.array([[-np.inf, left], [right, np.inf]])
        ua, ub = log_masses(unk, z, "abs")
        corners = [
            p_from_masses(np.logaddexp(la, xa), np.logaddexp(lb, xb), "abs")
            for xa in (-np.inf, ua)
            for xb in (-np.inf, ub)
        ]
        vals = [c for c in corners if np.isfinite(c)]
        return p, (min(vals), max(vals)) if vals else (0.0, 1.0)
    u_left = float(log_ndtr(left)) if np.isfinite(left) else (-np.inf if left < 0 else 0.0)
    u_right = float(log_ndtr(-right)) if np.isfinite(right) else (-np.inf if right > 0 else 0.0)
    # F = A/(A+B) grows with unknown mass on the left and shrinks with mass on the right.
    f_vals = []
    for xa, xb in ((-np.inf, u_right), (u_left, -np.inf)):
        ta, tb = np.logaddexp(la, xa), np.logaddexp(lb, xb)
        tot = np.logaddexp(ta, tb)
        f_vals.append(np.exp(ta - tot) if np.isfinite(tot) else np.nan)
    if not all(np.isfinite(f_vals)):
        return p, (0.0, 1.0)
    f_min, f_max = min(f_vals), max(f_vals)
    p_ends = [2 * min(f, 1 - f) for f in (f_min, f_max)]
    p_hi = 1.0 if f_min <= 0.5 <= f_max else max(p_ends)
    # 1 − F is only used in the bracket (not in the reported p), where tiny p hardly matter;
    # the reported p above is computed without it.
    return p, (max(0.0, min(min(p_ends), p)), min(1.0, max(p_hi, p)))


def precision_limits(
    log_a: float, log_b: float, precision: float, alternative: str
) -> tuple[float, float]:
    """(right, left): beyond these the unexplored tails cannot widen the p bracket past
    ``precision`` (``left`` may exceed ``right``; ±inf when a side never matters).

    Two-sided p: the unexplored mass u_L left of the explored range adds to A (the known mass
    below z_obs) and u_R right of it to B, so F = A/(A + B) rises by at most u_L·B/(A + B)²
    and falls by at most u_R·A/(A + B)², and p = 2·min(F, 1 − F) moves by twice that. Tails
    with u_L ≤ precision·(A + B)²/(4B) and u_R ≤ precision·(A + B)²/(4A) therefore keep the
    bracket within ``precision``. When p is small one of A, B is small, and the tail on the
    other side hardly needs exploring. For ``"abs"``, p = A/(A + B) moves by at most
    u/(A + B) for either tail, so each tail below precision·(A + B)/4 will do.
    """
    log_total = float(np.logaddexp(log_a, log_b))
    log_q = np.log(precision / 4.0)
    if alternative == "two-sided":
        log_u_right = log_q + 2.0 * log_total - log_a
        log_u_left = log_q + 2.0 * log_total - log_b
    else:
        log_u_right = log_u_left = log_q + log_total

    def limit(log_u: float) -> float:  # z with upper-tail mass exp(log_u)
        return float(-ndtri(np.exp(log_u))) if log_u < 0.0 else -np.inf

    return limit(log_u_right), -limit(log_u_left)
