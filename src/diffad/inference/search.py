"""Truncation sets along the line: over-conditioning and (batched) parametric programming.

A *piece* is the interval around a traced point z on which every network decision is
constant (from :class:`~diffad.inference.trace.ReconstructionTracer`); inside it the
filtered difference F(z) is affine, so the selection M(z) = {i : |F_i(z)| > λ} can only
change where some F_i crosses ±λ, and those points are solved for exactly. The search
therefore steps over network pieces only, never over the finer abs/threshold pieces.

Parametric search walks outwards from z_obs in both directions. In batched mode each round
traces many points at once (spaced a few typical piece widths apart, skipping points
already covered), which turns the per-layer work into large GEMMs. After each round the
p-value is bracketed: the contiguous explored range [l, r] is known exactly and the two
unexplored tails (−∞, l) and (r, ∞) may or may not belong to the truncation set. The search
stops when the bracket is narrower than ``precision`` (``"precision"``), when it lies on one
side of α (``"decision"``), or when [−z_max, z_max] is fully covered (``"exhaustive"``, which
reports the remaining bracket as the stated precision).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtri

from diffad.inference.truncnorm import log_interval_mass

TERMINATIONS = ("exhaustive", "precision", "decision")


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


def selection_intervals(
    z0: float,
    lo: float,
    hi: float,
    fv: np.ndarray,
    fs: np.ndarray,
    lam: float,
    m_obs: np.ndarray,
) -> list[tuple[float, float]]:
    """Sub-intervals of the piece [lo, hi] on which M(z) equals ``m_obs``.

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
    m_obs : numpy.ndarray
        Shape (n,), bool, the observed selection.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.concatenate([(lam - fv) / fs, (-lam - fv) / fs]) + z0
    roots = roots[np.isfinite(roots) & (roots > lo) & (roots < hi)]
    bounds = np.concatenate([[lo], np.unique(roots), [hi]])
    mids = _representative(bounds)
    sel = np.abs(fv[None, :] + fs[None, :] * (mids - z0)[:, None]) > lam
    keep = (sel == m_obs[None, :]).all(axis=1)
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


@dataclass
class SearchResult:
    """Outcome of :func:`parametric_search`.

    Attributes
    ----------
    intervals : numpy.ndarray
        (k, 2) truncation set found inside the explored range (merged).
    p_value : float
        p computed on ``intervals`` (unexplored tails left out, as sicore does).
    p_bounds : tuple of float
        Smallest and largest p compatible with any membership of the unexplored tails.
    explored : tuple of float
        Contiguous explored range [l, r].
    n_evaluations : int
        Points traced (network forward passes along the line).
    n_pieces : int
        Distinct network pieces found.
    n_rounds : int
        Batched rounds.
    """

    intervals: np.ndarray
    p_value: float
    p_bounds: tuple[float, float]
    explored: tuple[float, float]
    n_evaluations: int
    n_pieces: int
    n_rounds: int
    widths: list = field(default_factory=list, repr=False)


def _log_masses(intervals: np.ndarray, z: float, alternative: str) -> tuple[float, float]:
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
    """p from the two log masses of :func:`_log_masses` (two-sided: A below z, B above)."""
    total = np.logaddexp(log_a, log_b)
    if not np.isfinite(total):
        return float("nan")
    if alternative == "abs":
        return float(min(1.0, np.exp(log_a - total)))
    return float(min(1.0, 2.0 * np.exp(min(log_a, log_b) - total)))


def _p_bounds(la: float, lb: float, z: float, left: float, right: float, alternative: str):
    """p on the known set, given by its log masses (``_log_masses``), and its bracket over
    the unknown tails (−∞, left), (right, ∞)."""
    p = p_from_masses(la, lb, alternative)
    # Unknown masses, split as the p formula needs them.
    if alternative == "abs":
        unk = np.array([[-np.inf, left], [right, np.inf]])
        ua, ub = _log_masses(unk, z, "abs")
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


def _precision_limits(
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


def check_batch_size(batch_size: object) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is a positive integer (bool excluded)."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def parametric_search(
    evaluate: Callable[[np.ndarray], list],
    z_obs: float,
    z_max: float = 10.0,
    batch_size: int = 16,
    spacing: float = 3.0,
    termination: str = "exhaustive",
    precision: float = 1e-3,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    step: float = 1e-9,
    max_evaluations: int = 1_000_000,
) -> SearchResult:
    """Find the truncation set {z : M(z) = M_obs} by tracing pieces outwards from z_obs.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(zs)`` returns, for each point, ``(lo, hi, accepted)`` with the network
        piece [lo, hi] containing it and the list of its sub-intervals where M = M_obs.
    z_obs : float
        Observed statistic (the search starts there).
    z_max : float
        Explore [−z_max, z_max] (widened to contain z_obs ± 5).
    batch_size : int
        Points traced per direction and round (1 = classic sequential search).
    spacing : float
        Distance between the points of one round, in median widths of the recent pieces.
        Piece widths vary, so at 1 about every other point lands in a piece an earlier point
        of the same round already traced; at 3 such repeats are rare, and the gaps left
        between points are filled in later rounds by points that each find a new piece
        (``benchmarks/si_spacing.py``, D = 8 and 16: 16–18 % fewer points than 1).
    termination : {"exhaustive", "precision", "decision"}
        When to stop (see the module docstring).
    precision : float
        Target width of the p bracket for ``"precision"``.
    alpha : float
        Level for ``"decision"``.
    alternative : {"two-sided", "abs"}
        p-value definition (see :mod:`diffad.inference.truncnorm`).
    step : float
        Relative step past a piece end to reach the next piece; slivers narrower than this
        are skipped (their mass is below step·φ).
    max_evaluations : int
        Safety cap on traced points.
    """
    if termination not in TERMINATIONS:
        raise ValueError(f"termination must be one of {TERMINATIONS}, got {termination!r}")
    check_batch_size(batch_size)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be > 0, got {spacing}")
    z_max = max(float(z_max), abs(z_obs) + 5.0)
    pieces: list[tuple[float, float]] = []
    accepted: list[tuple[float, float]] = []
    widths = {1: [], -1: []}
    left = right = float(z_obs)
    n_eval = n_rounds = 0
    p, bounds = float("nan"), (0.0, 1.0)
    # log masses of the truncation set found so far, split as p needs them (A, B)
    log_below = log_above = -np.inf

    def eps(x: float) -> float:
        return step * max(1.0, abs(x))

    # Sorted piece starts and the running maximum of their ends: the first stored piece that
    # contains x (in sorted order) is then two bisections away instead of a scan.
    starts: list[float] = []
    ends_max: list[float] = []

    def index_pieces() -> None:
        pieces.sort()
        starts[:] = [lo for lo, _ in pieces]
        ends_max[:] = np.maximum.accumulate([hi for _, hi in pieces]).tolist()

    def covering(x: float) -> tuple[float, float] | None:
        first = bisect.bisect_left(ends_max, x)  # first piece whose end reaches x
        if first < bisect.bisect_right(starts, x):  # ... and it starts at or before x
            return pieces[first]
        return None

    def advance(x: float, direction: int) -> float:
        # Walk over stored pieces from the frontier as long as they touch it.
        while True:
            probe = x + direction * eps(x)
            cov = covering(probe)
            if cov is None:
                return x
            x = cov[1] if direction > 0 else cov[0]
            if not np.isfinite(x):
                return x

    def candidates(x: float, direction: int, limit: float, count: int) -> list[float]:
        # Space the points a few typical piece widths apart (see ``spacing``).
        w = widths[direction][-32:]
        delta = spacing * float(np.median(w)) if w else 0.01
        out: list[float] = []
        cur = x + direction * eps(x)
        while len(out) < count and direction * (limit - cur) > 0:
            cov = covering(cur)
            if cov is not None:
                nxt = cov[1] if direction > 0 else cov[0]
                if not np.isfinite(nxt):
                    break
                cur = nxt + direction * eps(nxt)
                continue
            out.append(cur)
            cur += direction * delta
        return out

    first = True
    while n_eval < max_evaluations:
        if first:
            pts = [float(z_obs)]
            first = False
        else:
            # Spend the round where the unexplored probability mass matters: a side whose
            # tail moves the p bracket 10x less than the other's waits. For the two-sided p
            # a tail's effect is its mass times the known mass on the other side of z_obs
            # (see ``_precision_limits``).
            m_right = float(log_ndtr(-right)) if right < z_max else -np.inf
            m_left = float(log_ndtr(left)) if left > -z_max else -np.inf
            known_any = max(log_below, log_above) > -np.inf
            w_right, w_left = m_right, m_left
            if termination != "exhaustive" and alternative == "two-sided" and known_any:
                w_right, w_left = m_right + log_below, m_left + log_above
            limits = [(z_max, -z_max)]
            if termination == "precision" and known_any:
                # No point of this round is placed where the tail is too light to matter;
                # the full range is the fallback when the capped one has no room left.
                capped = _precision_limits(log_below, log_above, precision, alternative)
                limits.insert(0, (min(z_max, capped[0]), max(-z_max, capped[1])))
            pts = []
            for right_limit, left_limit in limits:
                if m_right > -np.inf and w_right >= w_left - np.log(10.0):
                    pts += candidates(
                        right, 1, right_limit, batch_size if m_left > -np.inf else 2 * batch_size
                    )
                if m_left > -np.inf and w_left >= w_right - np.log(10.0):
                    pts += candidates(
                        left, -1, left_limit, batch_size if m_right > -np.inf else 2 * batch_size
                    )
                if pts:
                    break
            if not pts:
                break
        results = evaluate(np.asarray(pts))
        n_eval += len(pts)
        n_rounds += 1
        for z, (lo, hi, acc) in zip(pts, results, strict=True):
            pieces.append((lo, hi))
            accepted.extend(acc)
            if np.isfinite(hi - lo):
                widths[1 if z >= z_obs else -1].append(hi - lo)
        index_pieces()
        right = advance(right, 1)
        left = advance(left, -1)
        known = merge_intervals(
            [(max(lo, left), min(hi, right)) for lo, hi in accepted if hi > left and lo < right],
            tol=4 * step,
        )
        log_below, log_above = _log_masses(known, z_obs, alternative)
        p, bounds = _p_bounds(log_below, log_above, z_obs, left, right, alternative)
        done = right >= z_max and left <= -z_max
        if termination == "precision" and bounds[1] - bounds[0] <= precision:
            done = True
        if termination == "decision" and (bounds[1] <= alpha or bounds[0] > alpha):
            done = True
        if done:
            break
    distinct = len({(round(lo, 9), round(hi, 9)) for lo, hi in pieces})
    return SearchResult(
        intervals=known,
        p_value=p,
        p_bounds=bounds,
        explored=(left, right),
        n_evaluations=n_eval,
        n_pieces=distinct,
        n_rounds=n_rounds,
        widths=widths[1] + widths[-1],
    )
